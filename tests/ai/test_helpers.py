from .conftest import edit_distance, wer


def test_edit_distance_and_wer():
    assert edit_distance("a b c".split(), "a x c".split()) == 1
    assert edit_distance([], "a b".split()) == 2
    assert edit_distance("a b c d".split(), "a c d e".split()) == 2
    assert wer(["The meeting is at 3 o'clock."], ["the meeting is at three oclock"]) == 0.0
    assert abs(wer(["one two three four"], ["one too three"]) - 0.5) < 1e-9
