#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/<target>/ (docs/fuzzing.md).

Valid inputs are named ok-*, inputs that must be refused bad-*; crash regressions found by
fuzzing are saved separately as regress-* and are not written by this script. The
cms_envelope seeds come from `openssl cms` (make_cms_seeds.sh). Run from anywhere:
    python3 tests/fuzz/make_seed_corpus.py
"""
import hashlib
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
PROFILES = ROOT.parent.parent / "config" / "profiles"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data.encode() if isinstance(data, str) else data)


CARD = ('<card id="C0001"><pan>4111111111111111</pan><expiry>2812</expiry>'
        '<service-code>201</service-code><name>JANE DOE</name>'
        '<discretionary-data>1234</discretionary-data>'
        '<pin-block>00112233445566778899AABBCCDDEEFF0011223344556677</pin-block></card>')

# record_splitter_xml: whole files. The first byte also picks the split point.
put("record_splitter_xml", "ok-two-cards.xml",
    '<?xml version="1.0"?>\n<cards>\n' + CARD + '\n<card id="C0002"/>\n</cards>\n')
put("record_splitter_xml", "ok-cdata-comment.xml",
    '<cards><!-- c --><card id="x"><name><![CDATA[a</card>]]></name></card></cards>')
put("record_splitter_xml", "bad-unterminated.xml", '<cards><card id="1"><pan>41')
put("record_splitter_xml", "bad-deep.xml", '<card>' + '<a>' * 12 + '</a>' * 12 + '</card>')
put("record_splitter_xml", "bad-mismatch.xml", '<cards><card><x></y></card><card/></cards>')

# record_splitter_fixed: first byte % 32 is the record length (0: lines), second the split.
put("record_splitter_fixed", "ok-lines.txt", "\x00\x07C0001   4111111111111111\r\nC0002   5500\n")
put("record_splitter_fixed", "ok-fixed8.txt", "\x08\x03ABCDEFGHIJKLMNOP")
put("record_splitter_fixed", "bad-short-tail.txt", "\x08\x05ABCDEFGHIJK")
put("record_splitter_fixed", "bad-long-line.txt", "\x00\x01" + "9" * 300 + "\n")

# record_fields: one record under acme-import-xml.
put("record_fields", "ok-card.xml", CARD)
put("record_fields", "ok-entities.xml", '<card id=" C2 "><name>A &amp; B&#65;</name></card>')
put("record_fields", "ok-empty.xml", '<card id="C3"/>')
put("record_fields", "bad-repeated.xml", '<card id="C4"><pan>1</pan><pan>2</pan></card>')
put("record_fields", "bad-element.xml", '<bank id="C5"/>')
put("record_fields", "bad-nul.xml", '<card id="C6">\x00</card>')
put("record_fields", "bad-xml.xml", '<card id="C7"><pan>')


def xof_segment(card_ids, blocks=((0, b"P" * 20), (1, b"T" * 20), (2, b"G" * 20)),
                wrapped=None, number=0):
    body = struct.pack(">II", number, len(card_ids))
    for cid in card_ids:
        body += struct.pack(">H", len(cid)) + cid.encode()
    body += struct.pack(">H", len(blocks))
    for cls, sealed in blocks:
        body += struct.pack(">HI", cls, len(sealed)) + sealed
    w = b""
    for blob in (wrapped if wrapped is not None else [b"W" * 40] * len(card_ids)):
        w += struct.pack(">H", len(blob)) + blob
    body += struct.pack(">I", len(w)) + w
    return b"PFSG" + struct.pack(">I", len(body)) + body


# xof_segment: segment 0 under the header of acme-import-xml (blocks for classes 0, 1, 2;
# one wrapped attribute, pin_block).
put("xof_segment", "ok-two-cards.bin", xof_segment(["C0001", "C0002"]))
put("xof_segment", "ok-absent-wrapped.bin", xof_segment(["C0001"], wrapped=[b""]))
put("xof_segment", "ok-empty.bin", xof_segment([], wrapped=[]))
put("xof_segment", "bad-number.bin", xof_segment(["C0001"], number=1))
put("xof_segment", "bad-class.bin", xof_segment(["C1"], blocks=((0, b""), (2, b""), (1, b""))))
put("xof_segment", "bad-truncated.bin", xof_segment(["C0001", "C0002"])[:-7])
put("xof_segment", "bad-magic.bin", b"PFSX" + xof_segment(["C1"])[4:])

# profile: the shipped profiles and broken copies.
for p in sorted(PROFILES.glob("*.xml")):
    put("profile", "ok-" + p.name, p.read_bytes())
xml = (PROFILES / "acme-import-xml.xml").read_text()
put("profile", "bad-unknown-attr.xml", xml.replace('<xof segment-cards="1024"/>',
                                                   '<xof segment-cards="1024" x="1"/>'))
put("profile", "bad-no-card-id.xml", xml.replace('<card-id attribute="card_id"/>', ""))
put("profile", "bad-truncated.xml", xml[: len(xml) // 2])
put("profile", "bad-dup-class.xml", xml.replace('name="secret"', 'name="pan"'))

# key_component
put("key_component", "ok-kcv.txt", "# component 1\n0123 4567 89AB CDEF FEDC BA98 7654 3210\n"
    "KCV: 08D7B4\n")
put("key_component", "ok-no-kcv.txt", "00112233445566778899AABBCCDDEEFF0011223344556677\n")
put("key_component", "bad-odd.txt", "0123456789ABCDEF0\n")
put("key_component", "bad-kcv.txt", "0123456789ABCDEF0123456789ABCDEF\nKCV = 08D7\n")
put("key_component", "bad-two-values.txt", "00112233445566778899AABBCCDDEEFF\n"
    "00112233445566778899AABBCCDDEEFF\r\n")

# pkcs11_uri
for i, uri in enumerate([
        "pkcs11:token=perso;object=tk-acme-01;type=secret-key",
        "pkcs11:id=%01%02%FF;manufacturer=SoftHSM%20project;serial=1234;model=SoftHSM%20v2"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so",
        "pkcs11:object=a%3Bb%2Fc;x-vendor=1;slot-id=0?pin-source=file:/x&module-name=m",
        "pkcs11:object=dkep-pan;type=private;library-description=x"]):
    put("pkcs11_uri", f"ok-{i}.txt", uri)
for i, uri in enumerate(["pkcs11:object=x?pin-value=1234", "pkcs11:object=%G1",
                         "pkcs11:object=a;object=b", "pkcs:object=a", "pkcs11:type=key",
                         "pkcs11:foo=bar"]):
    put("pkcs11_uri", f"bad-{i}.txt", uri)

# tlv
for name, hexs in [
        ("ok-fci", "6F1A840E315041592E5359532E4444463031A5088801025F2D02656E"),
        ("ok-padding", "00006F0384010100009F7001AA"),
        ("ok-ff40", "FF400A E1084F06A000000151 00".replace(" ", "")),
        ("ok-long-len", "DF018181" + "AB" * 129),
        ("bad-overrun", "6F10840101"),
        ("bad-tag", "9F"),
        ("bad-len", "5A84FFFFFFFF"),
        ("bad-nested", "70035A0501")]:
    put("tlv", name + ".bin", bytes.fromhex(hexs))

# apdu
for name, hexs in [
        ("ok-case1", "80CA9F7F"),
        ("ok-case2-short", "00C0000000"),
        ("ok-case3-short", "80E2800004DF010100"),
        ("ok-case4-short", "00A4040008A00000015100000000"),
        ("ok-case2-ext", "80CA00FE000000"),
        ("ok-case3-ext", "80E2900000000301020304"[:-2]),
        ("ok-case4-ext", "00A40400000002A0000100"),
        ("bad-lc", "00A4040008A000"),
        ("bad-short", "00A404"),
        ("bad-ext-lc0", "00A4040000000000")]:
    put("apdu", name + ".bin", bytes.fromhex(hexs))

# audit_log: a chain made like formats/audit_log.cpp, then damaged copies.


def audit_chain(n):
    prev, out = "0" * 64, []
    for seq in range(1, n + 1):
        body = ('{"seq":%d,"time":"2026-11-22T03:0%d:44Z","event":"import.done","operator":"root",'
                '"host":"vm","pid":42,"details":{"cards":%d,"card_id":"C%04d"},"prev":"%s"}'
                % (seq, seq % 10, seq * 10, seq, prev))
        h = hashlib.sha256(body.encode()).hexdigest()
        out.append(body[:-1] + ',"hash":"%s"}' % h)
        prev = h
    return out


lines = audit_chain(3)
put("audit_log", "ok-three.jsonl", "\n".join(lines) + "\n")
put("audit_log", "ok-empty.jsonl", "")
put("audit_log", "bad-truncated.jsonl", "\n".join(lines))
put("audit_log", "bad-edited.jsonl", "\n".join(lines).replace('"cards":20', '"cards":21') + "\n")
put("audit_log", "bad-removed.jsonl", lines[0] + "\n" + lines[2] + "\n")
put("audit_log", "bad-reordered.jsonl", lines[1] + "\n" + lines[0] + "\n")
put("audit_log", "bad-not-json.jsonl", lines[0] + "\n{\"seq\":2,\n")

# config_file
put("config_file", "ok-full.conf", "# persoflow\n[hsm]\nmodule = /usr/lib/softhsm/libsofthsm2.so\n"
    "token = perso\npin_env = PERSO_PIN\nmax_sessions = 4\n\n; audit\n[audit]\nlog = /var/log/a\n")
put("config_file", "ok-empty-value.conf", "[hsm]\r\ntoken =\r\npin_file=/run/pin\r\n")
put("config_file", "bad-unknown.conf", "[hsm]\nslot = 1\n")
put("config_file", "bad-repeated.conf", "[hsm]\ntoken = a\ntoken = b\n")
put("config_file", "bad-no-section.conf", "token = a\n")
put("config_file", "bad-line.conf", "[hsm\nmodule\n")
