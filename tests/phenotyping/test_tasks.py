from kinpath.phenotyping.tasks import MISSING, UNSEEN, LabelEncoder


def test_missing_is_masked_and_unseen_reported() -> None:
    enc = LabelEncoder.fit("grade", ["G1", "", "G3", "G1"])
    assert enc.classes == ("G1", "G3")  # empty is not a class
    ids, unseen = enc.encode(["G3", "", "G2", "G1"])
    assert ids == [1, MISSING, UNSEEN, 0]
    assert unseen == {"G2": 1}
    assert enc.decode([0, 1]) == ["G1", "G3"]
