"""Conversation history: the earlier turns of a chat and what they mean for the current
question. Pure functions over strings and plain message dicts.

Offline (no LLM) a follow-up is made standalone by a rule: an elliptical question —
“那欧美资金呢？”, “第二年呢？”, “它的期限是多久？” — is read together with the previous
standalone question, so retrieval and the answer stay on the same subject. With an LLM
configured, prompts/condense.txt rewrites the question instead (rag.llm).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

Message = Mapping[str, object]
SPEAKERS = {"user": "用户", "assistant": "助手"}
MAX_TURNS = 6  # messages of history that inform a question; older ones rarely matter

# A question that leans on the one before it: opens with a connective, ends with 呢,
# or points back with a pronoun.
_LEANS_BACK = re.compile(
    r"^(?:那么?|还有|另外|此外|以及|其中|同样|如果是|换成|改成)"
    r"|呢\s*[？?。!！]*\s*$"
    r"|它|该(?:政策|办法|文件|项目|区|地|企业|奖励|补贴|条款)|这(?:个|项|条|份)|上述|前面|刚才"
)
_TRAILING_MARKS = re.compile(r"[\s？?。!！]+$")
_SHORT = 6  # a question of this few characters cannot stand alone


def text_of(content: object) -> str:
    """A message's text: a string, or OpenAI/Gradio-style parts [{"type": "text", …}]."""
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def turns(history: Iterable[Message]) -> list[dict[str, str]]:
    """The user and assistant messages with text, as {"role", "content"} dicts."""
    out = []
    for message in history:
        role, content = message.get("role"), " ".join(text_of(message.get("content")).split())
        if role in SPEAKERS and content:
            out.append({"role": str(role), "content": content})
    return out


def format_history(history: Iterable[Message], limit: int = MAX_TURNS) -> str:
    """One `用户：…` / `助手：…` line per message, the last `limit` messages."""
    return "\n".join(f"{SPEAKERS[m['role']]}：{m['content']}" for m in turns(history)[-limit:])


def leans_back(question: str) -> bool:
    """Whether a question needs the one before it to be understood."""
    core = _TRAILING_MARKS.sub("", question)
    return len(core) <= _SHORT or bool(_LEANS_BACK.search(core))


def standalone_question(history: Iterable[Message], question: str) -> str:
    """The question as retrieval should see it: itself when it stands alone, otherwise
    the last question that stood alone followed by it (so a chain of follow-ups keeps
    the subject without growing)."""
    subject = ""
    for message in turns(history)[-MAX_TURNS:]:
        if message["role"] == "user" and not leans_back(message["content"]):
            subject = message["content"]
    if not subject or not leans_back(question):
        return question
    return f"{_TRAILING_MARKS.sub('', subject)}？{question}"
