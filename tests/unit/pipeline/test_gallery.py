"""misclassified.html: the mistakes, most confident first, capped, every user string escaped."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from edgetl.pipeline.gallery import PAGE, find_mistakes, write_gallery

NAMES = ["cat", "<script>alert('x')</script>", 'say "hi" & <b>']


def _data(count: int = 6):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2][:count])
    # rows 1, 2 and 4 wrong, with confidences 0.9, 0.6 and 0.7
    probs = np.array([
        [0.8, 0.1, 0.1], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.1, 0.1, 0.8],
    ][:count])
    files = [f"{NAMES[y]}/<img src=x onerror=alert({i})>.png" for i, y in enumerate(labels)]
    return pixels, labels, probs, files


def test_mistakes_most_confident_first():
    _, labels, probs, files = _data()
    mistakes = find_mistakes(probs, labels, NAMES, files)
    assert [m.index for m in mistakes] == [1, 4, 2]
    assert mistakes[0].true == NAMES[1] and mistakes[0].predicted == "cat" and mistakes[0].confidence == 0.9
    assert mistakes[0].true_probability == 0.05


def test_page_escapes_user_strings_and_embeds_thumbnails(tmp_path):
    pixels, labels, probs, files = _data()
    summary = write_gallery(tmp_path, pixels, labels, probs, NAMES, files, title="pets <i>")
    assert summary == {"file": PAGE, "images": 6, "misclassified": 3, "shown": 3}
    page = (tmp_path / PAGE).read_text()
    assert "<script>" not in page and "<img src=x" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "say &quot;hi&quot; &amp; &lt;b&gt;" in page
    assert "3 of 6 validation images are misclassified" in page
    assert "default-src &#x27;none&#x27;" not in page and "default-src 'none'; img-src data:" in page  # the CSP itself is ours, unescaped
    sources = re.findall(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(sources) == 3
    thumb = Image.open(io.BytesIO(base64.b64decode(sources[0])))
    assert thumb.format == "JPEG" and thumb.size == (32, 32)
    assert page.index("true: &lt;script&gt;") < page.index("true: say")  # 0.9 before 0.7
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_the_page_is_capped_and_says_how_many_there_are(tmp_path):
    pixels, labels, probs, files = _data()
    summary = write_gallery(tmp_path, pixels, labels, probs, NAMES, files, max_shown=2)
    page = (tmp_path / PAGE).read_text()
    assert summary["misclassified"] == 3 and summary["shown"] == 2
    assert "3 of 6 validation images are misclassified; the 2 most confident mistakes are shown." in page
    assert page.count("<figure>") == 2


def test_no_mistakes_says_so(tmp_path):
    pixels, labels, probs, files = _data()
    perfect = np.eye(3)[labels]
    summary = write_gallery(tmp_path, pixels, labels, perfect, NAMES, files)
    page = (tmp_path / PAGE).read_text()
    assert summary["misclassified"] == 0 and "<figure>" not in page
    assert "None: the artifact classified all 6 validation images correctly." in page


def test_large_images_are_shrunk(tmp_path):
    pixels = np.full((2, 300, 300, 3), 200, dtype=np.uint8)
    write_gallery(tmp_path, pixels, np.array([0, 1]), np.array([[0.2, 0.8], [0.9, 0.1]]), ["a", "b"], ["a/1.png", "b/2.png"])
    sources = re.findall(r'base64,([A-Za-z0-9+/=]+)"', (tmp_path / PAGE).read_text())
    assert [Image.open(io.BytesIO(base64.b64decode(s))).size for s in sources] == [(128, 128)] * 2
