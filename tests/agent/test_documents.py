"""Reading documents for /feed: files of every supported kind, folders, and URLs served by a real
http.server on 127.0.0.1; bad input is one DocumentError naming it."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.documents import DocumentError, read_file, read_source, read_url
from agent.web import AddressPolicy

LOCAL = AddressPolicy(allowed_networks=("127.0.0.1/32",))  # the test server below

HTML = (
    "<!doctype html><html><head><title>The Seine</title></head><body>"
    "<nav>Home | About | Contact</nav><article><h1>The Seine</h1>"
    "<p>Paris is a city on the river Seine. The river Seine flows into the sea near Le Havre, "
    "after a long course through the north of France.</p>"
    "<p>The tower in Paris was built in 1889 and many people visit it every year.</p>"
    "</article><script>var tracking = 1;</script></body></html>"
)


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica (xref offsets computed, so pypdf reads it)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/page.html":
            body = HTML.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        elif self.path == "/notes.txt":
            body = "Rome is a city on the river Tiber.".encode("latin-1")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=latin-1")
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        elif self.path == "/slow":
            time.sleep(2)
            body = b"late"
            self.send_response(200)
        elif self.path == "/big":
            body = b"word " * 50_000
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
        else:
            body = b"not here"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the client hangs up on /slow and /big on purpose


@pytest.fixture(scope="module")
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_text_markdown_latin1_and_pdf_files(tmp_path):
    (tmp_path / "a.txt").write_text("The capital of France is Paris.", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Rome\n\nThe capital of Italy is Rome.", encoding="utf-8")
    (tmp_path / "c.txt").write_bytes("Le café est à Paris, près de la Seine.".encode("latin-1"))
    (tmp_path / "d.pdf").write_bytes(minimal_pdf("The tower in Paris was built in 1889."))
    assert read_file(tmp_path / "a.txt").text == "The capital of France is Paris."
    assert read_file(tmp_path / "b.md").title == "b"
    assert "café" in read_file(tmp_path / "c.txt").text
    pdf = read_file(tmp_path / "d.pdf")
    assert pdf.kind == "pdf" and "built in 1889" in pdf.text


def test_a_folder_reads_what_it_can_and_reports_the_rest(tmp_path):
    (tmp_path / "good.txt").write_text("The capital of France is Paris.", encoding="utf-8")
    (tmp_path / "empty.md").write_text("   \n", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not a readable suffix
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    documents, errors = read_source(tmp_path)
    assert [d.title for d in documents] == ["good"]
    assert len(errors) == 1 and "no text" in str(errors[0])


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("blob.txt", b"\x00\x01\x02\x03" * 64, "binary"),
        ("empty.txt", b"", "no text"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "PDF"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError, match=message):
        read_source(path)


def test_missing_huge_and_empty_folder(tmp_path):
    with pytest.raises(DocumentError, match="does not exist"):
        read_source(tmp_path / "nope.txt")
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000, encoding="utf-8")
    with pytest.raises(DocumentError, match="over the limit"):
        read_file(big, max_bytes=100)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DocumentError, match="no readable files"):
        read_source(empty)


def test_urls_html_and_declared_charset(server):
    [page], errors = read_source(f"{server}/page.html", LOCAL)
    assert not errors and page.kind == "html" and page.title == "The Seine"
    assert "built in 1889" in page.text and "tracking" not in page.text
    assert page.uri == f"{server}/page.html"
    assert (
        read_url(f"{server}/notes.txt", policy=LOCAL).text == "Rome is a city on the river Tiber."
    )


def test_bad_urls_are_one_clear_error(server):
    with pytest.raises(DocumentError, match="HTTP 404"):
        read_url(f"{server}/missing", policy=LOCAL)
    with pytest.raises(DocumentError, match="redirects"):
        read_url(f"{server}/loop", policy=LOCAL)
    with pytest.raises(DocumentError, match="no complete answer within"):
        read_url(f"{server}/slow", timeout_s=0.5, policy=LOCAL)
    with pytest.raises(DocumentError, match="over the limit"):
        read_url(f"{server}/big", max_bytes=10_000, policy=LOCAL)
    with pytest.raises(DocumentError, match="unreachable"):
        read_url("http://127.0.0.1:9/nothing", policy=LOCAL)
