"""Bad input, generated (hypothesis): whatever bytes a JSONL file or a YAML config holds, every
importer either returns records or raises InputError - one line that names the file (and the
line, and the field where there is one) - never another exception (a traceback). Exporters never
leave a half-written file where a complete one was."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ranktune.config import parse_config
from ranktune.errors import InputError
from ranktune.jsonl import read_jsonl, write_jsonl_atomic
from ranktune.records import read_demonstrations, read_preferences, read_prompts

try:  # another stage's reader; its module may be mid-change elsewhere
    from reward.records import read_rankings
except Exception:  # noqa: BLE001
    read_rankings = None

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = ["prompt", "completion", "messages", "chosen", "rejected", "margin", "answers", "ranks", "ranking_id",
          "reviewer", "flagged", "role", "content"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), kids, max_size=4),
                           max_leaves=12)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot"]),
                                           "content": st.text(max_size=10) | st.integers()}), max_size=3)
records = st.dictionaries(st.sampled_from(FIELDS), json_values | messages | st.text(max_size=30), max_size=6)


def json_line(rec: dict) -> bytes:
    return json.dumps(rec, allow_nan=True).encode()


line_kinds = st.one_of(
    records.map(json_line),
    st.binary(max_size=40),  # anything, including invalid UTF-8 and NUL
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),  # lone surrogates: invalid UTF-8
    json_values.map(lambda v: json.dumps(v).encode()),  # valid JSON that is not an object
    records.map(lambda r: json_line(r)[:-1]),  # cut short
    st.sampled_from([b"", b"   ", b"\xef\xbb\xbf{}", b'{"prompt": "a", "prompt": "b"}', b"[" * 3000,
                     b'{"a": ' + b"9" * 5000 + b"}", b'{"prompt": "\\ud800"}', b"{" + b" " * 200_000 + b"}",
                     '{"prompt": "\u2028"}'.encode(), b'{"prompt": "x", "chosen": "a", "rejected": "b", '
                     b'"margin": 1e999}']),
)
files = st.lists(line_kinds, max_size=6).map(lambda lines: b"\n".join(lines))

READERS = {"read_jsonl": read_jsonl, "read_prompts": read_prompts, "read_demonstrations": read_demonstrations,
           "read_preferences": read_preferences}
if read_rankings is not None:
    READERS["read_rankings"] = lambda p: read_rankings(str(p))


def check_reader(reader, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_bytes(content)
        try:
            reader(path)
        except InputError as err:
            message = str(err)
            assert "\n" not in message, message
            assert message.startswith(str(path)), message  # names the file...
            if err.line is not None:  # ...and the line, which holds the problem
                assert message.startswith(f"{path}:{err.line}: ")
                assert 1 <= err.line <= content.count(b"\n") + 1
            if err.field is not None:
                assert f"field '{err.field}'" in message


@pytest.mark.parametrize("name", sorted(READERS))
@SETTINGS
@given(content=files)
def test_every_reader_gives_records_or_a_one_line_error_naming_the_file(name, content):
    check_reader(READERS[name], content)


@pytest.mark.parametrize("name", sorted(READERS))
def test_named_bad_files(name, tmp_path):
    reader = READERS[name]
    cases = {
        "empty": (b"", None, "file is empty"),
        "blank lines only": (b"\n  \n", None, "file is empty"),
        "invalid UTF-8 on line 3": (b'{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "\xff"}\n', 3, "not valid UTF-8"),
        "UTF-16": ('{"prompt": "a"}\n'.encode("utf-16"), 1, "not valid UTF-8"),
        "nested 100k deep": (b"[" * 100_000 + b"]" * 100_000, 1, "nested too deeply"),
        "a 5000-digit number": (b'{"prompt": ' + b"7" * 5000 + b"}", 1, "not valid JSON"),
        "duplicate key": (b'\n{"prompt": "a", "prompt": "b"}', 2, "field 'prompt': appears twice"),
        "lone surrogate": (b'{"prompt": "a\\udc00"}', 1, "surrogate"),
        "cut-off line": (b'\n\n{"prompt": "b', 3, "not valid JSON"),
    }
    for what, (content, line, needle) in cases.items():
        path = tmp_path / f"{name}-{len(content)}.jsonl"
        path.write_bytes(content)
        with pytest.raises(InputError) as info:
            reader(path)
        where = f"{path}:{line}: " if line else f"{path}: "
        assert str(info.value).startswith(where) and needle in str(info.value), (what, str(info.value))
    # A huge but valid line is read, not refused.
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"prompt": "p" * 5_000_000, "completion": "c", "chosen": "a", "rejected": "b",
                               "answers": ["a", "b"], "ranks": [1, 2]}) + "\n")
    assert len(reader(big)) == 1 or name == "read_rankings"


def test_preference_margins_must_be_finite_numbers(tmp_path):
    for margin in ("1e999", "-1e999", "NaN", "Infinity", "9" * 400, '"2"', "true"):
        path = tmp_path / "pairs.jsonl"
        path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
                        f'{{"prompt": "p", "chosen": "a", "rejected": "b", "margin": {margin}}}\n')
        with pytest.raises(InputError, match=re.escape(f"{path}:2: field 'margin': expected a finite number")):
            read_preferences(path)


# ---- configs ----------------------------------------------------------------------------------

def _config_types():
    from labeling_ui.config import ALL

    return ALL


yaml_text = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.dictionaries(st.sampled_from(["run", "overlap", "claim_timeout_minutes", "k", "temperature", "port",
                                     "include_flagged", "nope", "1", "null"]),
                    st.one_of(json_scalars, st.lists(json_scalars, max_size=2)), max_size=4)
    .map(lambda d: "\n".join(f"{k}: {json.dumps(v)}" for k, v in d.items())),
    st.sampled_from(["overlap: 2\noverlap: 3\n", "1: 2\n", "null: x\n", "a: " + "[" * 3000, "- a\n- b\n",
                     "overlap: abc\n", "include_flagged: maybe\n", "\t- tab", "a: !!python/object:os.system x\n"]),
)


@SETTINGS
@given(text=yaml_text)
def test_any_config_file_gives_settings_or_a_one_line_error_naming_it(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "label.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            parse_config(_config_types(), ["--config", str(path)])
        except InputError as err:
            assert "\n" not in str(err) and str(path) in str(err), str(err)


def test_named_bad_configs(tmp_path):
    cases = {"overlap: 2\noverlap: 3\n": ":1: setting 'overlap' appears twice",
             "1: 2\n": "setting names are text", "a: " + "[" * 5000: "nested too deeply",
             "overlap: abc\n": "setting --overlap: invalid int value: 'abc' (in ", "- a\n": "expected a mapping",
             "zzz: 1\n": "unknown setting(s): zzz"}
    for i, (text, needle) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        with pytest.raises(InputError) as info:
            parse_config(_config_types(), ["--config", str(path)])
        assert needle in str(info.value) and str(path) in str(info.value), str(info.value)


# ---- exporters: all or nothing ---------------------------------------------------------------

class Interrupted(Exception):
    pass


@SETTINGS
@given(old=st.lists(st.dictionaries(st.text(max_size=5), json_scalars, max_size=3), min_size=1, max_size=5),
       new=st.lists(st.dictionaries(st.text(max_size=5), json_scalars, max_size=3), max_size=20),
       stop_at=st.integers(min_value=0, max_value=20),
       exc=st.sampled_from([Interrupted, KeyboardInterrupt, OSError]))
def test_an_interrupted_export_leaves_the_old_file_untouched(old, new, stop_at, exc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export" / "rankings.jsonl"
        write_jsonl_atomic(path, old)
        before = path.read_bytes()

        def records():
            for i, rec in enumerate(new):
                if i == stop_at:
                    raise exc("stopped mid-export")
                yield rec
            if stop_at >= len(new):
                raise exc("stopped before the file was closed")

        with pytest.raises(exc):
            write_jsonl_atomic(path, records())
        assert path.read_bytes() == before  # the complete old file, byte for byte
        assert sorted(p.name for p in path.parent.iterdir()) == ["rankings.jsonl"]  # no temp file left behind
        assert before == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in old).encode()


def test_an_unencodable_record_fails_the_export_before_anything_is_replaced(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])
    with pytest.raises(UnicodeEncodeError):
        write_jsonl_atomic(path, [{"a": 2}, {"b": "\ud800"}])
    assert path.read_text() == '{"a": 1}\n' and [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]
