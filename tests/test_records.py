"""Every reader turns bad input into one InputError naming file, line and field — whatever the bytes."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ranktune.errors import InputError
from ranktune.jsonl import read_jsonl, write_jsonl_atomic
from ranktune.records import read_demonstrations, read_preferences, read_prompts


def test_preferences_reject_identical_and_one_sided_pairs(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "a"}) + "\n")
    with pytest.raises(InputError, match=r"p.jsonl:1: field 'rejected': is the same text"):
        read_preferences(f)
    f.write_text(json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(InputError, match=r"p.jsonl:1: field 'rejected': missing"):
        read_preferences(f)
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}) + "\n")
    with pytest.raises(InputError, match="field 'margin': expected a finite number"):
        read_preferences(f)


def test_chat_demonstrations_split_before_the_last_assistant_turn(tmp_path):
    f = tmp_path / "d.jsonl"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    f.write_text(json.dumps({"messages": msgs}) + "\n\n")  # a trailing blank line is fine
    [rec] = read_demonstrations(f)
    assert rec == {"prompt": msgs[:1], "completion": "hello"}


def test_invalid_utf8_names_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"p.jsonl:2: not valid UTF-8"):
        read_prompts(f)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl_atomic(target, [{"a": 1}])

    def broken():
        yield {"a": 2}
        raise RuntimeError("disk fell off")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(target, broken())
    assert target.read_text() == '{"a": 1}\n', "the old file survives a failed write"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"], "no temp file left behind"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_parse_or_raise_one_input_error(tmp_path, data):
    f = tmp_path / "fuzz.jsonl"
    f.write_bytes(data)
    for reader in (read_demonstrations, read_prompts, read_preferences):
        try:
            records = reader(f)
        except InputError as err:
            assert str(err).startswith(str(f)) and "\n" not in str(err)
        else:
            assert records and all(isinstance(r, dict) for r in records)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.sampled_from(["prompt", "completion", "chosen", "rejected", "messages", "x"]),
                                json_values, max_size=5), min_size=1, max_size=4))
def test_wrong_types_and_missing_fields_never_crash_a_reader(tmp_path, objs):
    f = tmp_path / "typed.jsonl"
    f.write_text("".join(json.dumps(o) + "\n" for o in objs))
    for reader in (read_demonstrations, read_prompts, read_preferences):
        try:
            records = reader(f)
        except InputError as err:
            assert "\n" not in str(err)
        else:
            assert len(records) == len(objs), "no record is silently dropped"


def test_huge_line_is_read_whole(tmp_path):
    f = tmp_path / "big.jsonl"
    f.write_text(json.dumps({"prompt": "x" * 2_000_000}) + "\n")
    assert len(read_jsonl(f)[0]["prompt"]) == 2_000_000
