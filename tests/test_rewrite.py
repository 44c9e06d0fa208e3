"""Tests for ipykeyguard.transforms.rewrite: one per context, exact output text, names, failure modes,
and real-kernel checks of the IPython semantics the rewrite forms rely on."""

from __future__ import annotations

import ast
import hashlib
import random
import tokenize

import pytest

from fakekeys import aws_access_key_id, generic_secret, github_classic_token, openai_legacy_key, openai_project_key
from ipykeyguard.engine.findings import Confidence, fingerprint
from ipykeyguard.transforms.rewrite import Rewrite, rewrite_source
from ipykeyguard.engine.scan import Scanner

K = "OPENAI_API_KEY"


class FakeKeys(dict):
    """Fake keys by placeholder; the repr is masked so a failing test's traceback shows none."""

    def __repr__(self) -> str:
        return f"FakeKeys({sorted(self)})"


@pytest.fixture
def keys():
    """Fresh fake keys for one test: OpenAI (two), GitHub, AWS, and a generic secret."""
    rng = random.Random()
    return FakeKeys({
        "K": openai_project_key(rng),
        "K2": openai_legacy_key(rng),
        "G": github_classic_token(rng),
        "A": aws_access_key_id(rng),
        "S": generic_secret(rng),
    })


def _leaks(text: str, keys: dict) -> bool:
    return any(value in text for value in keys.values())


def rewritten(template: str, keys: dict, **kwargs) -> Rewrite:
    """Rewrite ``template`` with ``{K}``-style placeholders filled by ``keys``; assert no key is left."""
    result = rewrite_source(template.format(**keys), **kwargs)
    leaked = _leaks(result.source, keys)
    assert not leaked, "key leaked into the rewritten source"
    leaked_repr = _leaks(repr(result), keys)
    assert not leaked_repr, "key leaked into the Rewrite repr"
    return result


def check(template: str, expected: str, keys: dict, **kwargs) -> Rewrite:
    """The rewrite of ``template`` is exactly ``expected`` and rewriting it again changes nothing."""
    result = rewritten(template, keys, **kwargs)
    assert result.source == expected
    again = rewrite_source(result.source)
    assert again.source == result.source and not again.changed
    return result


def transformed_parses(cell: str) -> bool:
    """Whether IPython's real input transformation of ``cell`` gives parseable Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        ast.parse(TransformerManager().transform_cell(cell))
    except SyntaxError:
        return False
    return True


# -- Python string contexts ---------------------------------------------------------------------


def test_whole_literal_keyword_argument_becomes_lookup(keys):
    """A keyword argument whose literal is exactly the key becomes an os.environ lookup, with os imported."""
    r = check('client = OpenAI(api_key="{K}")', 'import os\nclient = OpenAI(api_key=os.environ["OPENAI_API_KEY"])', keys)
    assert list(r.moved) == [K]
    assert r.moved[K].reveal() == keys["K"]
    assert r.changed and not r.masked and not r.skipped


def test_existing_top_level_import_os_is_reused(keys):
    """A cell that already imports os before the first lookup gets no second import."""
    check('import os, sys\nkey = "{K}"', 'import os, sys\nkey = os.environ["OPENAI_API_KEY"]', keys)
    check('import os.path\nkey = "{K}"', 'import os.path\nkey = os.environ["OPENAI_API_KEY"]', keys)


def test_import_inside_a_function_or_after_use_does_not_count(keys):
    """An import os nested in a def, or placed after the lookup, does not make os available in time."""
    check(
        'def f():\n    import os\nkey = "{K}"',
        'import os\ndef f():\n    import os\nkey = os.environ["OPENAI_API_KEY"]',
        keys,
    )
    check('key = "{K}"\nimport os', 'import os\nkey = os.environ["OPENAI_API_KEY"]\nimport os', keys)


def test_os_imported_inserts_no_line(keys):
    """With os_imported=True (os already imported where the cell runs) no `import os` line is
    inserted, so line numbers stay those of the original cell; without it the line stays."""
    check('key = "{K}"\nraise ValueError(key)', 'key = os.environ["OPENAI_API_KEY"]\nraise ValueError(key)',
          keys, os_imported=True)
    check('!echo {K}\nkey = "{K}"', '!echo $(printenv OPENAI_API_KEY)\nkey = os.environ["OPENAI_API_KEY"]',
          keys, os_imported=True)
    check('key = "{K}"', 'import os\nkey = os.environ["OPENAI_API_KEY"]', keys, os_imported=False)


def test_key_inside_a_larger_literal_becomes_fstring(keys):
    """Prefix, suffix and middle: the literal becomes an f-string with other quotes inside the braces."""
    check('h = {{"Authorization": "Bearer {K}"}}', 'import os\nh = {"Authorization": f"Bearer {os.environ[\'OPENAI_API_KEY\']}"}', keys)
    check("u = 'https://x/?k={K}&v=1'", 'import os\nu = f\'https://x/?k={os.environ["OPENAI_API_KEY"]}&v=1\'', keys)


def test_braces_already_in_the_literal_are_escaped(keys):
    """Braces in a literal turned f-string are doubled so the value stays the same."""
    check('x = "pre {{x}} {K} suf"', "import os\nx = f\"pre {{x}} {os.environ['OPENAI_API_KEY']} suf\"", keys)


def test_named_unicode_escape_survives_fstring_conversion(keys):
    """A \\N{...} escape is not mistaken for a replacement field when braces are escaped."""
    r = check('x = "\\N{{BULLET}} {K}"', "import os\nx = f\"\\N{BULLET} {os.environ['OPENAI_API_KEY']}\"", keys)
    assert r.changed


def test_concatenation_with_plus_keeps_the_expression(keys):
    """"Bearer " + key: only the key literal changes."""
    check('auth = "Bearer " + "{K}"', 'import os\nauth = "Bearer " + os.environ["OPENAI_API_KEY"]', keys)


def test_existing_fstring_literal_part(keys):
    """A key in the literal part of an f-string is spliced in as a field; other fields are untouched."""
    check('x = f"{{y}} {K} {{z!r:>10}}"', "import os\nx = f\"{y} {os.environ['OPENAI_API_KEY']} {z!r:>10}\"", keys)


def test_literal_inside_an_fstring_field(keys):
    """A literal inside an f-string's braces becomes a lookup, or a concatenation when it is partial."""
    check("x = f\"{{y + '{K}'}}\"", "import os\nx = f\"{y + os.environ['OPENAI_API_KEY']}\"", keys)
    check(
        "x = f\"{{y + 'Bearer {K}'}}\"",
        "import os\nx = f\"{y + ('Bearer ' + os.environ['OPENAI_API_KEY'])}\"",
        keys,
    )


def test_bytes_literals(keys):
    """Bytes cannot be f-strings: exact -> .encode(), partial -> a parenthesised concatenation."""
    check('x = b"{K}"', 'import os\nx = os.environ["OPENAI_API_KEY"].encode()', keys)
    check('x = b"Bearer {K}"', 'import os\nx = (b"Bearer " + os.environ["OPENAI_API_KEY"].encode())', keys)


def test_raw_strings_keep_their_backslashes(keys):
    """A raw literal keeps its r prefix and backslashes (str -> rf-string, bytes -> rb pieces)."""
    check('x = r"a\\d {K}"', "import os\nx = rf\"a\\d {os.environ['OPENAI_API_KEY']}\"", keys)
    check('x = rb"a\\d {K}"', 'import os\nx = (rb"a\\d " + os.environ["OPENAI_API_KEY"].encode())', keys)


def test_u_prefix_is_dropped_for_fstrings(keys):
    """u"..." cannot take an f prefix; u is a no-op in Python 3 so it is dropped."""
    check('x = u"k={K}"', "import os\nx = f\"k={os.environ['OPENAI_API_KEY']}\"", keys)


def test_triple_quoted_block_keeps_its_newlines(keys):
    """A key inside a triple-quoted block (a PEM-like block) keeps every other line as it was."""
    check(
        'pem = """-----BEGIN-----\n{K}\n-----END-----"""',
        "import os\npem = f\"\"\"-----BEGIN-----\n{os.environ['OPENAI_API_KEY']}\n-----END-----\"\"\"",
        keys,
    )


def test_implicit_concatenation(keys):
    """Adjacent literals: a key member becomes an f-string member (str) or the group a sum (bytes)."""
    check('x = ("abc" "{K}")', "import os\nx = (\"abc\" f\"{os.environ['OPENAI_API_KEY']}\")", keys)
    check(
        'x = (b"abc"  # c\n     b"{K}")',
        'import os\nx = ((b"abc"  # c\n     + os.environ["OPENAI_API_KEY"].encode()))',
        keys,
    )


def test_dict_values_and_environ_assignment(keys):
    """Dict values and os.environ["X"] = key become lookups (the assignment keeps its meaning)."""
    check('cfg = {{"token": "{G}", "n": 1}}', 'import os\ncfg = {"token": os.environ["GITHUB_TOKEN"], "n": 1}', keys)
    check(
        'import os\nos.environ["MY_TOKEN"] = "{G}"',
        'import os\nos.environ["MY_TOKEN"] = os.environ["GITHUB_TOKEN"]',
        keys,
    )


ESCAPE_RULE = r"""
[[rule]]
id = "test-escaped"
description = "a test rule whose secrets may hold backslashes"
regex = '''(?P<secret>XKEY[A-Za-z0-9\\]{10,40})'''
keywords = ["xkey"]
env = "ESC_KEY"
"""


def test_escaped_key_text_stores_the_runtime_value(tmp_path):
    """When the key's text holds an escape, the stored value is what the literal evaluates to."""
    from ipykeyguard.engine.config import Config

    rules = tmp_path / "rules.toml"
    rules.write_text(ESCAPE_RULE)
    scanner = Scanner(Config(extra_rules=(str(rules),)))
    body = "XKEYZq8vN2rT5yW1pL7k"
    r = rewrite_source('x = "' + body + '\\x41"', scanner=scanner)
    assert r.source == 'import os\nx = os.environ["ESC_KEY"]'
    assert r.moved["ESC_KEY"].reveal() == body + "A"
    raw = rewrite_source('x = r"' + body + '\\x41"', scanner=scanner)
    assert raw.moved["ESC_KEY"].reveal() == body + "\\x41"


def test_bash_variable_before_a_word_character_gets_braces(tmp_path):
    """In a %%bash body a key followed by a word character becomes ${NAME}, so the name ends there."""
    from ipykeyguard.engine.config import Config

    rules = tmp_path / "rules.toml"
    rules.write_text(ESCAPE_RULE)
    scanner = Scanner(Config(extra_rules=(str(rules),)))
    r = rewrite_source("%%bash\necho XKEYZq8vN2rT5yW1pL7k_suffix\n", scanner=scanner)
    assert r.source == "%%bash\necho ${ESC_KEY}_suffix\n"


def test_comment_is_masked(keys):
    """A key in a comment is replaced by its mask; the code line is untouched and gets no import."""
    r = check("x = 1  # old key {K}\n", "x = 1  # old key [secret:OPENAI_API_KEY]\n", keys)
    assert [f.rule for f in r.masked] == ["openai-api-key"]
    assert list(r.moved) == [K]  # the mask names where the key went


def test_docstring_is_masked_not_turned_into_fstring(keys):
    """A def/class docstring stays a docstring: the key is masked rather than interpolated."""
    check('def f():\n    """Uses {K} for auth."""\n    return 1', 'def f():\n    """Uses [secret:OPENAI_API_KEY] for auth."""\n    return 1', keys)
    check('class A: "doc {K}"', 'class A: "doc [secret:OPENAI_API_KEY]"', keys)


def test_bare_key_in_code_becomes_lookup(keys):
    """An unquoted key used as a value (a NameError before) becomes a lookup."""
    check("x = {A}", 'import os\nx = os.environ["AWS_ACCESS_KEY_ID"]', keys)


def test_formatting_and_other_lines_untouched(keys):
    """Only the key's span changes: spacing, comments, blank lines and CRLF stay as written."""
    check(
        "# setup\r\n\r\nx  =  ( 'a' ,\r\n  '{K}' )  # hm\r\ny=2\r\n",
        "# setup\r\n\r\nimport os\r\nx  =  ( 'a' ,\r\n  os.environ[\"OPENAI_API_KEY\"] )  # hm\r\ny=2\r\n",
        keys,
    )


def test_future_import_stays_first(keys):
    """import os goes after from __future__ imports, which must stay first."""
    check(
        'from __future__ import annotations\nx = "{K}"',
        'from __future__ import annotations\nimport os\nx = os.environ["OPENAI_API_KEY"]',
        keys,
    )


def test_indented_cell_gets_an_indented_import(keys):
    """A cell IPython dedents (first line indented) gets import os at that indentation."""
    r = check('    x = "{K}"\n    y = 2', '    import os\n    x = os.environ["OPENAI_API_KEY"]\n    y = 2', keys)
    assert transformed_parses(r.source)


# -- IPython syntax ---------------------------------------------------------------------------


def test_env_magic_becomes_python_assignment(keys):
    """%env X=key becomes os.environ["X"] = os.environ["NAME"] (the magic cannot read the environment)."""
    r = check(
        "%env OPENAI_API_KEY={K}\nprint(1)",
        'import os\nos.environ["OPENAI_API_KEY"] = os.environ["OPENAI_API_KEY"]\nprint(1)',
        keys,
    )
    assert transformed_parses(r.source)
    check(
        "x = 1\n%set_env TOK Bearer {K}",
        'import os\nx = 1\nos.environ["TOK"] = f"Bearer {os.environ[\'OPENAI_API_KEY\']}"',
        keys,
    )


def test_env_magic_with_other_expansions_is_masked(keys):
    """A %env value that also uses IPython $/{} expansion cannot be translated safely: masked."""
    r = check("%env X={{a}}{K}", "%env X={a}[secret:OPENAI_API_KEY]", keys)
    assert r.masked


def test_shell_escape_uses_printenv(keys):
    """!cmd key -> "$(printenv NAME)", which IPython's $/{} expansion never touches."""
    check(
        "!curl -H \"Authorization: Bearer {K}\" -d '{{\"a\": 1}}' https://x",
        "!curl -H \"Authorization: Bearer $(printenv OPENAI_API_KEY)\" -d '{\"a\": 1}' https://x",
        keys,
    )
    check("!echo {K}", "!echo $(printenv OPENAI_API_KEY)", keys)


def test_shell_escape_in_single_quotes_closes_the_quotes(keys):
    """Inside '...' the shell expands nothing, so the quotes are closed around the lookup."""
    check(
        "!curl -H 'Authorization: Bearer {K}' https://x",
        "!curl -H 'Authorization: Bearer '\"$(printenv OPENAI_API_KEY)\" https://x",
        keys,
    )
    check("!echo 'a {K} b'", "!echo 'a '\"$(printenv OPENAI_API_KEY)\"' b'", keys)
    check("!echo '{K}'", "!echo \"$(printenv OPENAI_API_KEY)\"", keys)


def test_shell_assignment_and_double_bang(keys):
    """x = !cmd and !!cmd follow the ! rule; the Python part of the line is kept."""
    r = check("files = !ls {K}", "files = !ls $(printenv OPENAI_API_KEY)", keys)
    assert transformed_parses(r.source)
    check("!!echo {K}", "!!echo $(printenv OPENAI_API_KEY)", keys)


def test_shell_comment_is_masked(keys):
    """A key after # in a shell command is a comment: masked."""
    check("!echo hi  # {K}", "!echo hi  # [secret:OPENAI_API_KEY]", keys)


def test_bash_cell_body_uses_plain_variables(keys):
    """%%bash bodies reach the shell unexpanded: $NAME, ${{NAME}} before a word character, quotes kept."""
    check(
        "%%bash\necho {K}\ncurl -H \"Bearer {K}\"\necho '{K}'\n",
        '%%bash\necho $OPENAI_API_KEY\ncurl -H "Bearer $OPENAI_API_KEY"\necho "$OPENAI_API_KEY"\n',
        keys,
    )
    check("%%sh\necho {G}", "%%sh\necho $GITHUB_TOKEN", keys)
    check("%%bash\necho x=\"{G}\";", "%%bash\necho x=\"$GITHUB_TOKEN\";", keys)
    check("%%script bash\necho {G}", "%%script bash\necho $GITHUB_TOKEN", keys)


def test_bash_heredocs(keys):
    """In an unquoted heredoc quotes are text and $NAME expands; in a quoted one nothing expands: masked."""
    check(
        "%%bash\ncat <<EOF > cfg.json\n{{\"key\": \"{K}\", 'k': '{G}'}}\nEOF\ncat <<'RAW'\n{A}\nRAW\necho '{G}'\n",
        "%%bash\ncat <<EOF > cfg.json\n{\"key\": \"$OPENAI_API_KEY\", 'k': '$GITHUB_TOKEN'}\nEOF\ncat <<'RAW'\n"
        "[secret:AWS_ACCESS_KEY_ID]\nRAW\necho \"$GITHUB_TOKEN\"\n",
        keys,
    )


def test_python_cell_magic_body_is_python(keys):
    """%%time bodies are Python: the literal becomes a lookup and os is imported inside the body."""
    r = check('%%time\nx = "{K}"', '%%time\nimport os\nx = os.environ["OPENAI_API_KEY"]', keys)
    assert transformed_parses(r.source)


def test_python_line_magic_arguments(keys):
    """%time / %timeit arguments are Python."""
    r = check('%time x = "{K}"', 'import os\n%time x = os.environ["OPENAI_API_KEY"]', keys)
    assert transformed_parses(r.source)


def test_other_magics_are_masked(keys):
    """%run arguments and %%writefile bodies cannot read a variable: the key is masked."""
    check("%run foo.py {K}", "%run foo.py [secret:OPENAI_API_KEY]", keys)
    check("%%writefile a.txt\n{K}\n", "%%writefile a.txt\n[secret:OPENAI_API_KEY]\n", keys)


def test_magics_mixed_with_python_lines(keys):
    """Python lines, ! lines (also indented in a block) and magics in one cell each get their own rule."""
    r = check(
        'x = "{K}"\n!echo hi\nif x:\n    !echo {G}\n    y = 1\n%matplotlib inline',
        'import os\nx = os.environ["OPENAI_API_KEY"]\n!echo hi\nif x:\n    !echo $(printenv GITHUB_TOKEN)\n    y = 1\n%matplotlib inline',
        keys,
    )
    assert transformed_parses(r.source)


def test_bang_inside_a_string_or_brackets_is_python(keys):
    """A line starting with ! inside an open bracket or a triple-quoted string is not a shell escape."""
    check('x = """\n!{K}\n"""', "import os\nx = f\"\"\"\n!{os.environ['OPENAI_API_KEY']}\n\"\"\"", keys)


def test_cell_that_does_not_parse_still_loses_its_keys(keys):
    """Syntax errors: keys in whole literals still move; a key in a broken literal is masked."""
    r = check('x = "{K}"\ny = (', 'import os\nx = os.environ["OPENAI_API_KEY"]\ny = (', keys)
    assert r.moved
    r = check('x = "{K}\ny = 1', 'x = "[secret:OPENAI_API_KEY]\ny = 1', keys)
    assert r.masked


def test_rewrite_keeps_parse_or_falls_back_to_masks(keys):
    """A key in a place where a lookup cannot go (a def name) is masked rather than breaking the cell."""
    source = "x = 1\ncase = 2\nmatch x:\n    case \"{K}\":\n        pass\n".format(**keys)
    r = rewrite_source(source)
    leaked = keys["K"] in r.source
    assert not leaked, "key leaked"
    ast.parse(r.source)


# -- names -------------------------------------------------------------------------------------


def test_generic_names_come_from_the_assignment_or_keyword(keys):
    """A generic secret is named after the variable or keyword it is bound to."""
    r = check('api_key = "{S}"', 'import os\napi_key = os.environ["API_KEY"]', keys)
    assert list(r.moved) == ["API_KEY"]
    r = check('connect(db_password="{S}")', 'import os\nconnect(db_password=os.environ["DB_PASSWORD"])', keys)
    assert list(r.moved) == ["DB_PASSWORD"]


def test_same_value_reuses_its_name_and_different_values_get_suffixes(keys):
    """Two equal keys share one name; two different keys of one rule get NAME and NAME_2."""
    r = check(
        'a = "{K}"; b = "{K}"; c = "{K2}"',
        'import os\na = os.environ["OPENAI_API_KEY"]; b = os.environ["OPENAI_API_KEY"]; c = os.environ["OPENAI_API_KEY_2"]',
        keys,
    )
    assert {n: s.fingerprint for n, s in r.moved.items()} == {
        "OPENAI_API_KEY": fingerprint(keys["K"]),
        "OPENAI_API_KEY_2": fingerprint(keys["K2"]),
    }


def test_taken_names(keys):
    """A name already stored with another value is skipped; a stored value reuses its stored name."""
    r = rewritten('a = "{K}"', keys, taken={K: fingerprint(keys["K2"])})
    assert list(r.moved) == ["OPENAI_API_KEY_2"]
    r = rewritten('a = "{K}"', keys, taken={K: fingerprint(keys["K"])})
    assert list(r.moved) == [K]
    r = rewritten('a = "{K}"', keys, taken={"MY_OPENAI": fingerprint(keys["K"]), K: fingerprint(keys["K2"])})
    assert list(r.moved) == ["MY_OPENAI"]


# -- thresholds, results, purity ----------------------------------------------------------------


def test_findings_below_min_confidence_are_skipped_and_left(keys):
    """A finding below min_confidence is reported as skipped and left in the text."""
    source = 'api_key = "{S}"'.format(**keys)
    r = rewrite_source(source, min_confidence=Confidence.CERTAIN)
    unchanged = r.source is source
    assert unchanged and not r.changed
    assert len(r.skipped) == 1 and r.findings == r.skipped
    assert r.skipped[0].confidence == Confidence.LIKELY
    leaked = keys["S"] in repr(r)
    assert not leaked, "key leaked into repr"


def test_no_key_returns_the_same_object_without_tokenizing(monkeypatch):
    """A 200-line cell without keys is returned as is, and tokenize is never called."""
    cell = "".join(f"value_{i} = compute('token', key={i})  # secret sauce\n" for i in range(200))

    def boom(*args, **kwargs):
        raise AssertionError("tokenize called for a cell without keys")

    monkeypatch.setattr(tokenize, "generate_tokens", boom)
    r = rewrite_source(cell)
    assert r.source is cell and not r.changed and r.findings == ()


def test_moved_is_read_only_and_repr_is_masked(keys):
    """Rewrite.moved cannot be changed by a caller, and no repr shows a key."""
    r = rewritten('a = "{K}"  # {G}', keys)
    with pytest.raises(TypeError):
        r.moved["X"] = None  # type: ignore[index]
    text = repr(r) + repr(dict(r.moved)) + repr(r.findings)
    leaked = _leaks(text, keys)
    assert not leaked, "key leaked into a repr"


def test_rewrite_is_pure(keys, monkeypatch):
    """rewrite_source writes no environment variable and no file."""
    import os

    before = dict(os.environ)
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("open called")))
    rewritten('%env X={K}\n!echo {G}\na = "{A}"', keys)
    assert dict(os.environ) == before


def test_rewrite_module_imports_no_ipython():
    """rewrite.py itself imports no IPython (it runs in the CLI and the server)."""
    import subprocess
    import sys

    code = "import sys, ipykeyguard.transforms.rewrite as r; r.rewrite_source('x = 1'); print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the IPython semantics the rewrite forms rely on, in a real kernel --------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One real kernel whose environment holds KG_SECRET (and a Python variable of that name)."""
    from kernelharness import RealKernel

    value = "envvalue-" + openai_project_key()[-20:]
    k = RealKernel(cwd=tmp_path_factory.mktemp("kernel"), env={"KG_SECRET": value})
    k.start()
    k.ok("KG_SECRET = 'python-namespace-value'")
    try:
        yield k, value
    finally:
        k.stop()


def _hash_line(ex) -> str:
    return ex.stdout.strip().split()[0] if ex.stdout.strip() else ""


@pytest.mark.kernel
def test_kernel_printenv_survives_ipython_expansion(kernel):
    """In a ! line, $(printenv NAME) reads the environment with a same-named Python variable and JSON braces."""
    k, value = kernel
    for cell in (
        "!printf %s $(printenv KG_SECRET) | sha256sum",
        "!printf %s \"$(printenv KG_SECRET)\" '{\"a\": 1}' | sha256sum",
        "x = !printf %s $(printenv KG_SECRET) | sha256sum\nprint(x[0])",
    ):
        ex = k.ok(cell)
        if "'{" in cell:
            expected = _sha(value + '{"a": 1}')
        else:
            expected = _sha(value)
        assert _hash_line(ex) == expected


@pytest.mark.kernel
def test_kernel_why_not_dollar_forms(kernel):
    """$NAME is taken from the Python namespace and $$NAME breaks when the line has a failing expansion."""
    k, value = kernel
    ex = k.ok("!printf %s $KG_SECRET | sha256sum")
    assert _hash_line(ex) == _sha("python-namespace-value")
    ex = k.ok("!printf %s $$KG_SECRET '{\"a\": 1}' | sha256sum")
    assert _hash_line(ex) != _sha(value + '{"a": 1}')


@pytest.mark.kernel
def test_kernel_env_magic_cannot_read_the_environment(kernel):
    """%env X=$$NAME stores the literal text, which is why %env lines become Python."""
    k, value = kernel
    ex = k.ok("%env KG_COPY=$$KG_SECRET\nimport os; print(os.environ['KG_COPY'])")
    assert ex.stdout.strip().splitlines()[-1] == "$KG_SECRET"


@pytest.mark.kernel
def test_kernel_bash_body_is_not_expanded_by_ipython(kernel):
    """A %%bash body's $NAME is the environment variable even when a Python variable has that name."""
    k, value = kernel
    ex = k.ok("%%bash\nprintf %s \"$KG_SECRET\" | sha256sum")
    assert _hash_line(ex) == _sha(value)


@pytest.mark.kernel
def test_kernel_rewritten_cell_matches_the_original(tmp_path):
    """A mixed cell (Python, !, %env, %%-free) gives the same results before and after the rewrite."""
    from kernelharness import RealKernel

    key = openai_project_key()
    template = (
        'h = {{"Authorization": "Bearer {K}"}}\n'
        "%env KG_TARGET={K}\n"
        "out = !printf %s '{K}' | sha256sum\n"
        "import hashlib\n"
        "print(hashlib.sha256(h['Authorization'].encode()).hexdigest())\n"
        "print(hashlib.sha256(__import__('os').environ['KG_TARGET'].encode()).hexdigest())\n"
        "print(out[0].split()[0])\n"
    )
    original = template.format(K=key)
    r = rewrite_source(original)
    assert key not in r.source, "key leaked"
    assert list(r.moved) == [K]
    with RealKernel(cwd=tmp_path, env={K: key}) as k:
        before = k.ok(original).stdout
        k.ok("import os; os.environ.pop('KG_TARGET', None)\n%reset -f")
        after = k.ok(r.source).stdout
    assert before.splitlines()[-3:] == after.splitlines()[-3:]
    assert len(set(after.splitlines()[-3:])) == 2  # header hash differs from the bare-key hashes


@pytest.mark.kernel
def test_kernel_rewritten_bash_cell_matches_the_original(tmp_path):
    """A %%bash cell with quoted keys and an unquoted heredoc prints the same hashes after the rewrite."""
    from kernelharness import RealKernel

    key = github_classic_token()
    template = (
        "%%bash\n"
        "printf %s '{K}' | sha256sum\n"
        'printf %s "Bearer {K}" | sha256sum\n'
        "cat <<EOF | sha256sum\n"
        "{{\"token\": \"{K}\", 'raw': '{K}'}}\n"
        "EOF\n"
    )
    original = template.format(K=key)
    r = rewrite_source(original)
    assert key not in r.source, "key leaked"
    assert list(r.moved) == ["GITHUB_TOKEN"] and not r.masked
    with RealKernel(cwd=tmp_path, env={"GITHUB_TOKEN": key}) as k:
        before = k.ok(original).stdout.split()
        after = k.ok(r.source).stdout.split()
    assert len(before) == 6 and before == after


# -- regressions (issue 13) -------------------------------------------------------------------


@pytest.mark.parametrize("make_key", [github_classic_token, aws_access_key_id, openai_project_key])
def test_bare_key_after_an_escape_line_becomes_a_lookup_and_still_parses(make_key):
    """A bare key on the line after a ``;`` escape line becomes a lookup, and the cell still runs in IPython."""
    from IPython.core.inputtransformer2 import TransformerManager

    key = make_key(random.Random(7))
    source = ";\n" + key + " "
    result = rewrite_source(source)
    assert key not in result.source
    name = next(iter(result.moved))
    assert result.source == f'import os\n;\nos.environ["{name}"] '
    ast.parse(TransformerManager().transform_cell(result.source))
    assert rewrite_source(result.source).source == result.source


def test_pem_block_in_a_comment_before_code_is_masked_without_raising():
    """A PEM block in a comment followed by code that needs ``import os``: masked, moved, and no exception."""
    from fakekeys import pem_private_key

    pem = pem_private_key(random.Random(3))
    key = openai_project_key(random.Random(4))
    source = "# " + pem + f"\nx = '{key}'\n"
    result = rewrite_source(source)
    assert pem not in result.source and key not in result.source
    assert result.source == f'import os\n# [secret:PRIVATE_KEY]\nx = os.environ["{K}"]\n'
    assert sorted(result.moved) == [K, "PRIVATE_KEY"]
    assert rewrite_source(result.source).source == result.source


def _big_cell(n: int, key_line: str, at: int) -> list[str]:
    lines = [f"x{i} = compute({i}, 'text {i}')  # note {{i}}\n" for i in range(n)]
    lines[at] = key_line
    return lines


def test_key_deep_in_a_large_cell_changes_only_its_line(keys):
    """A key on line 70,000 of a 100k-line cell: only that line changes (plus ``import os`` on top)."""
    lines = _big_cell(100_000, f"if token == '{keys['K']}':\n", 70_000)
    lines.insert(70_001, "    print('match')\n")
    result = rewrite_source("".join(lines))
    expected = list(lines)
    expected[70_000] = f'if token == os.environ["{K}"]:\n'
    assert result.source == "import os\n" + "".join(expected)
    assert rewrite_source(result.source).source == result.source


def test_large_cell_rewrite_memory_is_a_small_multiple_of_the_source():
    """Rewriting a ~1 MB cell with one key peaks at well under 50 bytes of Python memory per source byte."""
    import tracemalloc

    source = "".join(_big_cell(25_000, f"key = '{openai_project_key(random.Random(5))}'\n", 17_000))
    rewrite_source("x = 1\n")  # build the default scanner outside the measurement
    tracemalloc.start()
    try:
        result = rewrite_source(source)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.changed
    assert peak / len(source) < 50, f"{peak / len(source):.0f} bytes per source byte"


def test_a_name_is_found_past_ten_thousand_taken_names():
    """With AWS_ACCESS_KEY_ID and _2 .. _10000 holding other values, a new key gets _10001 (no exception)."""
    key = aws_access_key_id(random.Random(9))
    taken = {"AWS_ACCESS_KEY_ID": fingerprint("other-0")}
    taken.update({f"AWS_ACCESS_KEY_ID_{n}": fingerprint(f"other-{n}") for n in range(2, 10_001)})
    result = rewrite_source(f"k = '{key}'\n", taken=taken)
    assert sorted(result.moved) == ["AWS_ACCESS_KEY_ID_10001"]
    assert result.source == 'import os\nk = os.environ["AWS_ACCESS_KEY_ID_10001"]\n'


def test_rewriting_a_cell_with_an_invalid_escape_emits_no_warning_of_its_own():
    """The rewriter's parse checks are silent: a cell with an invalid escape sequence (which the
    user's own run reports once) gets no second warning from the guard."""
    import warnings

    key = openai_project_key()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = rewrite_source(f'pattern = "\\d+"\nclient_key = "{key}"\n')
    assert key not in result.source and 'os.environ["OPENAI_API_KEY"]' in result.source
    assert [str(w.message) for w in caught] == []
