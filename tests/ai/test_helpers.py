from .conftest import edit_distance, wer


def test_edit_distance_and_wer():
    assert edit_distance("a b c".split(), "a x c".split()) == 1
    assert edit_distance([], "a b".split()) == 2
    assert edit_distance("a b c d".split(), "a c d e".split()) == 2
    # Whisper's English normaliser: case, punctuation, spelled-out numbers, British/American spelling
    assert wer(["The meeting is at 3 o'clock."], ["the meeting is at three o'clock"]) == 0.0
    assert wer(["Sales rose 25% in the colour range."], ["sales rose twenty five percent in the color range"]) == 0.0
    assert abs(wer(["red green blue black"], ["red grin blue"]) - 0.5) < 1e-9
