"""A strict parser of the Prometheus text exposition format 0.0.4, for checking /metrics.

parse(text) returns {family name: Family} and raises ValueError naming the line for anything a
Prometheus server would reject or that the format's rules forbid: a malformed name, label or
value; a bad escape; a sample before its family's TYPE or of another family in between
(families must be contiguous); two TYPE or HELP lines for one family; a duplicate series; a
counter whose samples do not end in _total; a missing final newline.
"""
import math
import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Family:
    def __init__(self, name):
        self.name, self.type, self.help = name, None, None
        self.samples = {}  # (sample name, ((label, value), ...) sorted) -> float

    def get(self, **labels):
        """The value of the one sample whose labels are exactly <labels>."""
        key = (self.name, tuple(sorted(labels.items())))
        return self.samples[key]

    def select(self, **labels):
        """Every sample whose labels include <labels>: {labels dict as tuple: value}."""
        out = {}
        for (_, lab), v in self.samples.items():
            d = dict(lab)
            if all(d.get(k) == v2 for k, v2 in labels.items()):
                out[lab] = v
        return out

    def total(self, **labels):
        return sum(self.select(**labels).values())


def _open_family(families, name, where):
    """A new family <name>: one seen before means its lines were not contiguous."""
    if name in families:
        raise ValueError("%s: family %s is not contiguous" % (where, name))
    families[name] = Family(name)
    return name


def _unescape_help(s, where):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in "\\n":
                raise ValueError("%s: bad escape in HELP" % where)
            out.append("\n" if s[i + 1] == "n" else "\\")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _labels(s, where):
    """Parses 'a="x",b="y"' (the text between braces); returns a sorted tuple of pairs."""
    labels, i = {}, 0
    while i < len(s):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", s[i:])
        if not m:
            raise ValueError("%s: bad label at %r" % (where, s[i:]))
        name = m.group(1)
        i += m.end()
        val = []
        while True:
            if i >= len(s):
                raise ValueError("%s: unterminated label value" % where)
            c = s[i]
            if c == "\\":
                if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                    raise ValueError("%s: bad escape in label %s" % (where, name))
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ValueError("%s: raw newline in label value" % where)
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise ValueError("%s: label %s twice" % (where, name))
        if name.startswith("__"):
            raise ValueError("%s: reserved label name %s" % (where, name))
        labels[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                raise ValueError("%s: expected ',' after label %s" % (where, name))
            i += 1
    return tuple(sorted(labels.items()))


def _value(s, where):
    if s in ("NaN", "+Inf", "-Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z", s):
        raise ValueError("%s: bad value %r" % (where, s))
    return float(s)


def _family_of(sample, families, current):
    """The family a sample name belongs to (histogram/summary suffixes included)."""
    if current is not None:
        f = families[current]
        if sample == current:
            return current
        if f.type in ("histogram", "summary") and sample in (
                current + "_sum", current + "_count", current + "_bucket"):
            return current
    return sample


def parse(text):
    if text and not text.endswith("\n"):
        raise ValueError("the exposition does not end with a newline")
    families, current = {}, None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d" % n
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    raise ValueError("%s: bad metric name %r" % (where, name))
                if name != current:
                    current = _open_family(families, name, where)
                f = families[name]
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    if f.help is not None:
                        raise ValueError("%s: second HELP for %s" % (where, name))
                    f.help = _unescape_help(rest, where)
                else:
                    if f.type is not None:
                        raise ValueError("%s: second TYPE for %s" % (where, name))
                    if f.samples:
                        raise ValueError("%s: TYPE after samples of %s" % (where, name))
                    if rest not in TYPES:
                        raise ValueError("%s: unknown type %r" % (where, rest))
                    f.type = rest
            continue  # other comments are allowed
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?[ \t]+(\S+)([ \t]+(-?\d+))?\Z", line)
        if not m:
            raise ValueError("%s: not a sample: %r" % (where, line))
        sname = m.group(1)
        fname = _family_of(sname, families, current)
        if fname != current:
            current = _open_family(families, fname, where)
        f = families[fname]
        if f.type == "counter" and not sname.endswith("_total"):
            raise ValueError("%s: counter sample %s does not end in _total" % (where, sname))
        labels = _labels(m.group(3), where) if m.group(3) else ()
        key = (sname, labels)
        if key in f.samples:
            raise ValueError("%s: duplicate series %s%r" % (where, sname, labels))
        v = _value(m.group(4), where)
        if f.type == "counter" and (v < 0 or math.isnan(v)):
            raise ValueError("%s: counter %s is %r" % (where, sname, v))
        f.samples[key] = v
    for f in families.values():
        if f.type is None:
            raise ValueError("family %s has no TYPE" % f.name)
    return families
