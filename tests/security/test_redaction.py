"""The redaction step (vdbnb.redaction): what it masks in text, speech, nested values and screen frames, and
that what it reports (an alert's facts) holds no character run of the secret."""
from __future__ import annotations

import json

import numpy as np

from testkit.leaks import leaked, random_api_key, random_secret
from testkit.media import text_image
from vdbnb.redaction import Redactor


def test_text_masks_and_reports_without_the_secret():
    key, pw = random_api_key(), random_secret(14)
    r = Redactor(b"k" * 32)
    red = r.text(f"export STRIPE_KEY={key} and password: {pw} for mail bob@example.org", "ocr_text")
    assert red.text == ("export STRIPE_KEY=[api_key redacted] and password: [password redacted] for mail "
                        "[email redacted]")
    assert [f.label for f in red.findings] == ["api_key", "password", "email"]
    facts = json.dumps([f.place() for f in red.findings])
    assert not leaked(key, facts) and not leaked(pw, facts), facts
    f = red.findings[0]
    assert red.text[f.span[0]:f.span[1]] == "[api_key redacted]" and f.field == "ocr_text"
    # fingerprints: the same secret gives the same one under one key, another under another key
    assert r.text(f"token {key}").findings[0].fingerprint == f.fingerprint
    assert Redactor(b"x" * 32).text(key).findings[0].fingerprint != f.fingerprint
    assert f.fingerprint.startswith("fp-") and not leaked(key, f.fingerprint)
    # idempotent: a redacted text has nothing left to find (its masks are not secrets)
    assert r.text(red.text).findings == [] and r.text(red.text, spoken=True).findings == []


def test_keep_reports_but_leaves_the_label():
    r = Redactor(keep=("email",))
    red = r.text("write to bob@example.org")
    assert red.text == "write to bob@example.org"
    assert red.findings[0].label == "email" and red.findings[0].redacted is False


def test_spoken_cue_redacts_the_rest_and_carries_over():
    r = Redactor()
    red = r.text("My password is pelican castle lemon 71.", spoken=True)
    assert red.text == "My password is [password redacted]." and red.findings[0].label == "password"
    red = r.text("My API key is dragon saddle mango", spoken=True)
    assert red.text == "My API key is [api_key redacted]"
    # the same words said without a cue are ordinary speech
    assert r.text("the pelican sat on the castle", spoken=True).findings == []
    # a cue that ends one utterance: the next one is the secret
    first = r.text("okay and my password is", spoken=True)
    assert first.dangling == "password" and first.findings == []
    nxt = r.text("pelican castle lemon.", spoken=True, after_cue=first.dangling)
    assert nxt.text == "[password redacted]." and nxt.findings[0].label == "password"
    # on screen a cue needs a secret-shaped value (prose stays)
    assert r.text("The password is required.").findings == []


def test_a_spoken_secret_cut_in_two_finals_is_masked_whole():
    """The live speech-to-text cut "my password is tiger dragon | mango." (seen on the rig at load 20): the
    short final right after the secret is more of it; a longer or later one is ordinary speech again."""
    from vdbnb.redaction import SpokenSecrets
    sp = SpokenSecrets(Redactor())
    a = sp.redact("My password is tiger dragon", 10.0, 12.0, True)
    assert a.text == "My password is [password redacted]"
    # its interim and its final, 0.6 s later: masked, and reported as the same kind
    assert sp.redact("mango", 12.6, 13.0, False).text == "[password redacted]"
    b = sp.redact("mango.", 12.6, 13.1, True)
    assert b.text == "[password redacted]." and b.findings[0].label == "password"
    # the chain ends with the first utterance that is long, or late
    long_ = sp.redact("and then we went to the castle for lunch", 13.5, 15.0, True)
    assert long_.findings == [] and "castle" in long_.text
    sp2 = SpokenSecrets(Redactor())
    sp2.redact("My API key is saddle lemon", 0.0, 2.0, True)
    assert sp2.redact("bamboo.", 5.0, 5.5, True).findings == []          # 3 s later: not part of it
    # a final that merely mentions a password (no secret at its end) starts nothing
    sp3 = SpokenSecrets(Redactor())
    sp3.redact("I forgot my password yesterday", 0.0, 2.0, True)
    assert sp3.redact("again.", 2.3, 2.6, True).findings == []
    # a cue at the end of one final still makes the whole next utterance the secret, whatever its length
    sp4 = SpokenSecrets(Redactor())
    assert sp4.redact("okay my password is", 0.0, 1.0, True).findings == []
    assert sp4.redact("pelican castle lemon falcon meadow", 1.4, 3.0, True).text == "[password redacted]"


def test_value_walks_nested_outputs():
    key = random_api_key()
    cell = {"source": f"os.environ['K'] = '{key}'", "outputs": [{"text": ["ok\n", f"Bearer {key}\n"]}], "n": 3}
    out, found = Redactor().value(cell)
    assert not leaked(key, json.dumps(out)) and out["n"] == 3
    assert {f.field for f in found} == {"source", "outputs.0.text.1"}


def test_screen_lines_cue_on_one_line_value_on_the_next():
    pw = random_secret(14)
    lines = [("Vault login", (10, 10, 200, 30)), ("password:", (10, 40, 120, 60)), (pw, (130, 40, 330, 60)),
             ("Quarterly report", (10, 70, 260, 90))]
    scr = Redactor().screen(lines)
    assert scr.texts == ["Vault login", "password:", "[password redacted]", "Quarterly report"]
    assert scr.boxes == [(127, 37, 333, 63)] and scr.findings[0].box == (130, 40, 330, 60)  # padded by PAD
    img = np.full((100, 400, 3), 255, np.uint8)
    masked = Redactor.mask(img, scr.boxes)
    assert masked[50, 200].max() == 0 and masked[80, 100].min() == 255 and img[50, 200].min() == 255


def test_frame_blacks_out_what_ocr_reads_as_a_secret():
    key, pw = random_api_key(), random_secret(14)
    img = text_image(["Deploy checklist for Friday", f"export STRIPE_KEY={key}", f"password: {pw}"])
    fr = Redactor().frame(img)
    assert {f.label for f in fr.findings} == {"api_key", "password"}
    assert fr.texts[0] == "Deploy checklist for Friday" and "[api_key redacted]" in fr.texts[1]
    # read the masked frame again: nothing of either secret is left in its pixels
    from vdbnb.ai.ocr import ScreenReader
    again = " ".join(ln.text for ln in ScreenReader().read(fr.image))
    assert "Deploy checklist" in again
    assert not leaked(key, again) and not leaked(pw, again), again


def test_mask_on_a_terminal_leaves_the_line_above_readable():
    """Terminal lines sit ~3 px apart and OCR boxes (text + margin) overlap by a third of their height: the
    mask of a secret line must cover all of its ink (read against the secret lines drawn alone) without eating
    the descenders of the line above (the rig's xterm read 'Deplov checklist for Fridav' after the mask)."""
    from vdbnb.ai.llm import jpeg_data_url
    from vdbnb.ai.ocr import ScreenReader
    key, pw = random_api_key(), random_secret(14)
    lines = ["Deploy checklist for Friday", f"export STRIPE_KEY={key}", f"password: {pw}"]
    term = dict(size=(1920, 1080), dark=True, font_size=19, spacing=22 / 19, font="DejaVuSansMono.ttf")
    img = text_image(lines, **term)
    fr = Redactor().frame(img)
    assert {f.label for f in fr.findings} == {"api_key", "password"}
    secret_ink = text_image(["", *lines[1:]], **term).astype(int).sum(axis=2) > 3 * 60
    assert not (secret_ink & (fr.image.astype(int).sum(axis=2) > 0)).any(), "a secret's pixel was left"
    # what a model is sent (downscaled JPEG) still reads the heading
    import base64
    import io

    from PIL import Image
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(jpeg_data_url(fr.image).split(",", 1)[1]))))
    assert "Deploy checklist for Friday" in " ".join(ln.text for ln in ScreenReader().read(sent))
