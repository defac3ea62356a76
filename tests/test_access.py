"""Roles, grants and what a principal may touch (rag.access): pure, with the grants file's
text inline."""

import os

import pytest

from rag.access import LOCAL, Forbidden, Grant, Grants, Principal, Role, parse_grants, within

GRANTS = """
[users."张三"]
role = "editor"
kbs = ["飞地经济"]

[groups."招商科"]
role = "reader"
kbs = ["飞地经济", "政策"]

[groups."信息中心"]
role = "admin"
"""


def test_a_user_gets_their_own_grant_and_their_groups():
    grants = parse_grants(GRANTS)
    zhang = Principal("张三", (grants["users"]["张三"], grants["groups"]["招商科"]))
    assert zhang.readable() == {"飞地经济", "政策"}
    assert zhang.editable() == {"飞地经济"}
    assert zhang.may_edit("飞地经济") and not zhang.may_edit("政策")
    assert not zhang.may_read("内部资料") and not zhang.is_admin


def test_an_admin_reads_and_edits_everything_whatever_kbs_say():
    admin = Principal("李四", (parse_grants(GRANTS)["groups"]["信息中心"],))
    assert admin.readable() is None and admin.editable() is None and admin.is_admin
    assert LOCAL.is_admin and LOCAL.may_edit("任何知识库")


def test_asking_for_a_knowledge_base_not_granted_is_forbidden_whether_it_exists_or_not():
    reader = Principal("王五", (Grant(Role.READER, frozenset({"政策"})),))
    reader.check_read(frozenset({"政策"}))
    with pytest.raises(Forbidden, match="内部资料"):
        reader.check_read(frozenset({"政策", "内部资料"}))
    with pytest.raises(Forbidden, match="不存在的库"):
        reader.check_read(frozenset({"不存在的库"}))


def test_a_user_with_no_grant_may_not_ask_at_all():
    with pytest.raises(Forbidden, match="no access"):
        Principal("陌生人").check_read()


def test_within_cuts_a_users_grants_to_what_the_key_allows():
    user = (Grant(Role.EDITOR, frozenset({"政策", "内部资料"})), Grant(Role.READER, None))
    cut = within(user, Grant(Role.READER, frozenset({"政策"})))
    assert cut == (Grant(Role.READER, frozenset({"政策"})), Grant(Role.READER, frozenset({"政策"})))
    assert (
        within(
            (Grant(Role.READER, frozenset({"内部资料"})),), Grant(Role.READER, frozenset({"政策"}))
        )
        == ()
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[users."a"]\nrole = "boss"', "unknown role 'boss'"),
        ('[users."a"]\nrole = "reader"\nkb = ["x"]', "unknown key 'kb'"),
        ('[users."a"]\nrole = "reader"\nkbs = [1]', "kbs is a list"),
        ('[teams."a"]\nrole = "reader"', r"unknown table \[teams\]"),
        ('[users."a"\nrole = "reader"', "not valid TOML"),
    ],
)
def test_a_grants_file_with_a_mistake_says_where(text, message):
    with pytest.raises(ValueError, match=message):
        parse_grants(text)


def test_the_grants_file_is_read_again_when_it_changes_and_a_broken_edit_keeps_the_last(tmp_path):
    path = tmp_path / "grants.toml"
    assert Grants(path).of("张三") == ()  # no file: nobody is granted anything
    path.write_text(GRANTS, "utf-8")
    changes = []
    grants = Grants(path, on_change=changes.append)
    assert grants.of("王五", ("招商科",)) == (Grant(Role.READER, frozenset({"飞地经济", "政策"})),)
    path.write_text('[users."*"]\nrole = "reader"\nkbs = ["政策"]\n', "utf-8")
    os.utime(path, ns=(1, 1))  # a new stamp even within the file system's clock tick
    assert grants.of("王五", ("招商科",)) == (Grant(Role.READER, frozenset({"政策"})),)
    path.write_text('[users."*"\n', "utf-8")
    os.utime(path, ns=(2, 2))
    assert grants.of("王五") == (Grant(Role.READER, frozenset({"政策"})),)
    with pytest.raises(ValueError, match="not valid TOML"):
        Grants(path)  # at start, a broken file stops the server instead
    assert changes == ["1 users, 0 groups"]  # the audit log hears of each change picked up
    path.unlink()
    assert grants.of("王五") == ()
    assert changes[-1] == "file removed: nobody is granted anything"
