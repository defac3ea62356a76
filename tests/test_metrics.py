from rag.metrics import answer_correct, first_gold_rank, hit_at, reciprocal_rank


def test_every_item_must_appear_and_a_list_item_is_a_set_of_alternatives():
    answer = "2021年特斯拉交付约131万辆，同比增长87%。"
    assert answer_correct(answer, [["1313851", "131万"]])
    assert answer_correct(answer, ["131万", "87%"])
    assert not answer_correct(answer, ["131万", "90%"])
    assert not answer_correct(answer, [])


def test_comparison_ignores_width_case_and_spaces():
    assert answer_correct("补贴比例为４０％ 。", ["40%"])
    assert answer_correct("RCEP 已生效", ["rcep已生效"])


def test_first_gold_rank_counts_documents_not_chunks():
    ranked = ["a", "a", "b", "c"]
    assert first_gold_rank(ranked, ["c"]) == 3
    assert first_gold_rank(ranked, ["z"]) == 0


def test_hit_and_reciprocal_rank():
    assert hit_at(1, 1) == 1.0 and hit_at(2, 1) == 0.0 and hit_at(0, 5) == 0.0
    assert reciprocal_rank(4) == 0.25 and reciprocal_rank(11) == 0.0


def test_a_hit_with_copies_in_other_documents_takes_one_place_and_counts_for_each():
    ranked = [("a", "g"), "b", "a", ("c",)]
    assert first_gold_rank(ranked, ["g"]) == 1  # the gold document holds the same passage
    assert first_gold_rank(ranked, ["b"]) == 2
    assert first_gold_rank(ranked, ["c"]) == 3  # "a" again takes no second place
