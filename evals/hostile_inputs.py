"""Hostile inputs of issue 17 that are not damage to the state: URLs that aim at the machine's own
network, and texts in legacy encodings.

    python evals/hostile_inputs.py --out results/hardening

- **SSRF** (`ssrf.json`): with default settings, URLs that reach loopback, private, link-local
  (the cloud metadata service) and other non-public addresses, directly, by name and through a
  redirect from an allowed server (127.0.0.1, the only address allowed), each fetched through the
  one fetch path (agent/web.py). Trap servers listen on 127.0.0.2 and ::1 and count every request
  that reaches them; the other targets cannot be reached on this machine, so what counts there is
  that the fetch is refused before any connection is made.
- **Encodings** (`encodings.json`): news sentences in 13 legacy encodings, as a file, as a feed
  that does not declare its encoding and as one that does; each is read as seal reads it and
  classed as stored correctly, refused, or mojibake (stored wrong).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.core.io import write_atomic  # noqa: E402
from agent.documents import DocumentError, read_file  # noqa: E402
from agent.ingest.sources import parse_feed  # noqa: E402
from agent.web import AddressPolicy, AddressRefused, Fetcher, FetchError  # noqa: E402
from evals.news_server import LOCAL_NETWORK, NewsServer, NewsWorld, Route, start  # noqa: E402

# News sentences in the scripts issue 17 names and a few more, each in a legacy encoding.
LEGACY = {
    "koi8_r": "Москва - столица России. В городе открыли новый мост через реку.",
    "euc_kr": "서울은 대한민국의 수도이다. 시장은 오래된 다리를 다시 열었다.",
    "cp1255": "ירושלים היא עיר עתיקה. ראש העיר פתח מחדש את הגשר הישן.",
    "tis_620": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย นายกเทศมนตรีเปิดสะพานเก่าอีกครั้ง",
    "shift_jis": "東京は日本の首都です。市長は古い橋を再び開き、多くの人々が見物に来ました。",
    "euc_jp": "東京は日本の首都です。市長は古い橋を再び開き、多くの人々が見物に来ました。",
    "gb2312": "北京是中国的首都。市长重新开放了旧桥，许多人在第一天早上来参观。",
    "big5": "台北是台灣的首都。市長重新開放了舊橋，許多人在第一天早上來參觀。",
    "cp1251": "Киев - столица Украины. Мэр снова открыл старый мост.",
    "iso8859_7": "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας. Ο δήμαρχος άνοιξε ξανά την παλιά γέφυρα.",
    "cp1252": "Le café de la gare a rouvert. Les élèves sont venus goûter les crêpes.",
    "cp1250": "Praha je hlavní město České republiky. Starosta znovu otevřel starý most.",
    "cp1254": "İstanbul büyük bir şehirdir. Belediye başkanı eski köprüyü yeniden açtı.",
}


def rss(title: str, text: str, declaration: str = "<?xml version='1.0'?>") -> str:
    return (
        f"{declaration}<rss version='2.0'><channel><title>News</title><item><title>{title}"
        f"</title><link>https://example.org/1</link><description>{text}</description></item>"
        "</channel></rss>"
    )


def _outcome(read) -> str:
    try:
        return "stored correctly" if read() else "mojibake"
    except DocumentError:
        return "refused"


def encodings(folder: Path) -> dict:
    rows = []
    for encoding, text in LEGACY.items():
        raw = text.encode(encoding)
        path = folder / f"{encoding}.txt"
        path.write_bytes(raw)
        bare = rss("t", text).encode(encoding)
        declared = rss("t", text, f"<?xml version='1.0' encoding='{encoding}'?>").encode(encoding)
        for form, read in (
            ("file", lambda p=path, t=text: read_file(p).text == t),
            ("feed, undeclared", lambda b=bare, t=text: parse_feed(b, "f")[0].inline_text == t),
            ("feed, declared", lambda d=declared, t=text: parse_feed(d, "f")[0].inline_text == t),
        ):
            rows.append({"encoding": encoding, "form": form, "outcome": _outcome(read)})
    outcomes = [r["outcome"] for r in rows]
    summary = {o: outcomes.count(o) for o in ("stored correctly", "refused", "mojibake")}
    return {"rows": rows, "summary": summary}


def _ipv6_loopback() -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return True
    return False


def ssrf() -> dict:
    world = NewsWorld(seed=1)
    world.publish(1)
    origin = start(world)  # 127.0.0.1: the one address allowed, to test redirects from it
    traps: list[NewsServer] = [start(world, host="127.0.0.2")]
    if _ipv6_loopback():
        traps.append(start(world, host="::1"))
    port = traps[0].server_address[1]
    targets = [
        ("http://169.254.169.254/latest/meta-data/", "metadata (link-local)"),
        ("http://[::ffff:169.254.169.254]/latest/", "metadata, IPv4-mapped IPv6"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0:9/", "unspecified"),
        (f"http://127.0.0.2:{port}/rss.xml", "loopback (trap server)"),
        # 127.0.0.1 itself is allowed on the redirect path, so this one is only fetched directly
        (f"http://localhost:{origin.server_address[1]}/rss.xml", "loopback by name (direct)"),
    ]
    if len(traps) > 1:
        targets.append((f"http://[::1]:{traps[1].server_address[1]}/rss.xml", "IPv6 loopback"))
    rows = []
    with (
        Fetcher(timeout_s=5.0, max_bytes=100_000) as default,
        Fetcher(
            timeout_s=5.0,
            max_bytes=100_000,
            policy=AddressPolicy(allowed_networks=(LOCAL_NETWORK,)),
        ) as from_origin,
    ):
        for n, (url, kind) in enumerate(targets):
            origin.route(f"/redirect-{n}", Route(302, b"", {"Location": url}))
            ways = [("direct, default settings", default, url)]
            if "(direct)" not in kind:
                redirect = f"{origin.base}/redirect-{n}"
                ways.append(("redirect from an allowed server", from_origin, redirect))
            for via, fetcher, start_url in ways:
                try:
                    fetcher.get(start_url)
                    outcome = "FETCHED"
                except AddressRefused as exc:
                    outcome = f"refused: {str(exc).split(' refused: ')[-1][:90]}"
                except FetchError as exc:
                    outcome = f"failed otherwise: {exc}"
                rows.append({"target": url, "kind": kind, "via": via, "outcome": outcome})
    reached = sum(len(t.requests) for t in traps)
    for server in (origin, *traps):
        server.shutdown()
    return {
        "rows": rows,
        "summary": {
            "fetches": len(rows),
            "refused": sum(r["outcome"].startswith("refused") for r in rows),
            "requests_reaching_trap_servers": reached,
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/hardening"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="seal-encodings-") as tmp:
        results = {"ssrf": ssrf(), "encodings": encodings(Path(tmp))}
    for name, result in results.items():
        write_atomic(args.out / f"{name}.json", json.dumps(result, indent=2, ensure_ascii=False))
        print(name, json.dumps(result["summary"]))
    bad = results["ssrf"]["summary"]["refused"] < results["ssrf"]["summary"]["fetches"]
    return 1 if bad or results["encodings"]["summary"]["mojibake"] else 0


if __name__ == "__main__":
    sys.exit(main())
