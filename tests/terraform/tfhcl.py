"""Reading terraform/modules/* with python-hcl2 (PyPI `python-hcl2`), for the offline checks.

python-hcl2 and checkov's fork (`bc-python-hcl2`) both install a top-level `hcl2` package, so
scripts/test-terraform.sh keeps python-hcl2 apart in `.tools/venv-tf/python-hcl2`
(`pip install --target`); this module puts that directory first on sys.path. Override it with
$PYTHON_HCL2_PATH.

python-hcl2 (>= 7) keeps string literals quoted (`"\"x\""`) and expressions wrapped
(`"${a.b}"`); `lit()` and `expr()` undo that.
"""

import glob
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODULES = os.path.join(ROOT, "terraform", "modules")

_hcl2_path = os.environ.get("PYTHON_HCL2_PATH", os.path.join(ROOT, ".tools", "venv-tf", "python-hcl2"))
if os.path.isdir(_hcl2_path):
    sys.path.insert(0, _hcl2_path)

try:
    import hcl2  # noqa: E402
except ImportError:  # pragma: no cover - reported to the operator
    sys.exit(
        "python-hcl2 is missing: run scripts/test-terraform.sh (it installs it into "
        ".tools/venv-tf/python-hcl2), or set PYTHON_HCL2_PATH"
    )

if not hasattr(hcl2, "load") or getattr(hcl2, "__version__", "0").startswith("0."):
    sys.exit(
        f"the `hcl2` module found ({getattr(hcl2, '__file__', '?')}, version "
        f"{getattr(hcl2, '__version__', '?')}) is checkov's bc-python-hcl2, not python-hcl2 >= 7; "
        "run scripts/test-terraform.sh"
    )


EXAMPLES = os.path.join(ROOT, "terraform", "examples")


def load_module(name):
    """All *.tf files of terraform/modules/<name>, merged: {"resource": [...], "data": [...], ...}."""
    return load_dir(os.path.join(MODULES, name))


def load_example(name):
    """All *.tf files of terraform/examples/<name>, merged like load_module."""
    return load_dir(os.path.join(EXAMPLES, name))


def load_dir(directory):
    merged = {}
    files = sorted(glob.glob(os.path.join(directory, "*.tf")))
    assert files, f"no .tf files in {os.path.relpath(directory, ROOT)}"
    for path in files:
        with open(path) as f:
            doc = hcl2.load(f)
        for key, value in doc.items():
            merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def lit(value):
    """A string literal's value (quotes removed), or raise if `value` is not a plain literal."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return inner.replace('\\"', '"').replace("\\\\", "\\")
    raise ValueError(f"not a string literal: {value!r}")


def is_lit(value):
    try:
        lit(value)
        return True
    except ValueError:
        return False


def expr(value):
    """The expression inside `${...}` (whole-value interpolation), else the literal's text."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    if is_lit(value):
        return lit(value)
    return value


def template(value):
    """A value as template text: literals unquoted, whole expressions as `${...}`
    (so `aws_kms_key.this.arn` and `"${aws_kms_key.this.arn}"` read the same)."""
    if is_lit(value):
        return lit(value)
    return value


def blocks(doc, kind, type_name):
    """{name: body} of `resource|data "<type_name>" "<name>"` blocks."""
    out = {}
    for entry in doc.get(kind, []):
        for tkey, by_name in entry.items():
            if tkey.strip('"') != type_name:
                continue
            for nkey, body in by_name.items():
                out[nkey.strip('"')] = body
    return out


def named(doc, kind):
    """{name: body} of top-level `variable|output|module "<name>"` blocks."""
    out = {}
    for entry in doc.get(kind, []):
        for k, v in entry.items():
            if not k.startswith("__"):
                out[k.strip('"')] = v
    return out


def locals_of(doc):
    out = {}
    for entry in doc.get("locals", []):
        for k, v in entry.items():
            if not k.startswith("__"):
                out[k] = v
    return out


def skips(doc):
    """[(resource address, check id, reason)] of every `#checkov:skip=ID:reason` in the module."""
    found = []
    for kind in ("resource", "data"):
        for entry in doc.get(kind, []):
            for tkey, by_name in entry.items():
                for nkey, body in by_name.items():
                    for c in body.get("__comments__", []):
                        m = re.match(r"\s*checkov:skip=([A-Z0-9_]+):(.*)", c.get("value", ""))
                        if m:
                            found.append((f"{tkey.strip(chr(34))}.{nkey.strip(chr(34))}", m.group(1), m.group(2).strip()))
    return found


def policy_statements(body):
    """Statements of an aws_iam_policy_document body: dicts with sid, effect, actions,
    resources (raw: literal text or expression; a whole-list expression such as
    `resources = local.token_secret_arns` is one element "${local.token_secret_arns}") and
    conditions [(test, variable, values)]."""
    out = []
    for st in body.get("statement", []):
        conditions = []
        for c in st.get("condition", []):
            values = c["values"]
            values = [template(v) for v in values] if isinstance(values, list) else values
            conditions.append((lit(c["test"]), lit(c["variable"]), values))
        out.append(
            {
                "sid": lit(st["sid"]),
                "effect": lit(st.get("effect", '"Allow"')),
                "actions": [lit(a) for a in st["actions"]],
                "resources": ([st["resources"]] if isinstance(st.get("resources"), str)
                              else [template(r) for r in st.get("resources", [])]),
                "principals": [(lit(p["type"]), [expr(i) for i in p["identifiers"]]) for p in st.get("principals", [])],
                "conditions": conditions,
            }
        )
    return out


def gate(count_expr, env):
    """Evaluate a `count = <bool expr> ? 1 : 0` gate over `local.*` booleans in `env`.
    None (no count) means always on. Only && || ! and parentheses are allowed."""
    if count_expr is None:
        return True
    e = expr(count_expr)
    m = re.fullmatch(r"\s*(.+?)\s*\?\s*1\s*:\s*0\s*", e)
    assert m, f"unexpected count expression {e!r}: use `<condition> ? 1 : 0` over locals"
    cond = m.group(1)
    py = cond.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)

    def sub(mo):
        name = mo.group(1)
        assert name in env, f"gate uses local.{name}, which the test does not model"
        return "True" if env[name] else "False"

    py = re.sub(r"\blocal\.([a-z_]+)\b", sub, py)
    assert re.fullmatch(r"[\sA-Za-z()]*", py) and set(re.findall(r"[A-Za-z]+", py)) <= {"True", "False", "and", "or", "not"}, (
        f"gate {e!r} is not a plain boolean over modelled locals"
    )
    return bool(eval(py))  # noqa: S307 - only True/False/and/or/not after the checks above


def for_each_gate(for_each_expr, env):
    """Evaluate `for_each = <bool expr> ? <collection> : {}` over `local.*` booleans: the
    collection expression when on, None when off. A plain collection is always on."""
    e = expr(for_each_expr)
    m = re.fullmatch(r"\s*(.+?)\s*\?\s*(.+?)\s*:\s*\{\s*\}\s*", e)
    if not m:
        return e
    return m.group(2) if gate(f"${{{m.group(1)} ? 1 : 0}}", env) else None
