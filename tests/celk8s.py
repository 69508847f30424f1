"""Kubernetes-flavoured CEL for testing CRD ``x-kubernetes-validations`` rules offline.

Built on cel-python (``celpy``).  What the API server does, and what this module copies:

* the CRD's structural ``openAPIV3Schema`` is walked together with the object (``properties``,
  ``items``, ``additionalProperties``); at every schema node that carries
  ``x-kubernetes-validations`` and whose value is present and not null, each ``rule`` is evaluated
  with ``self`` bound to that value (and ``oldSelf`` to the old value for transition rules);
* defaults from the schema are applied first (the API server defaults before it validates);
* rules that mention ``oldSelf`` are transition rules: skipped on create, and skipped on update when
  the old value cannot be correlated (list items are correlated only for
  ``x-kubernetes-list-type: map``), unless ``optionalOldSelf: true`` (then ``oldSelf`` is an
  optional: ``oldSelf.hasValue()``, ``oldSelf.value()``, ``oldSelf.orValue(x)``);
* types: schema ``integer`` -> CEL int (int64), ``number`` -> double, ``string`` with
  ``format: date-time``/``duration``/``byte`` -> timestamp/duration/bytes, objects -> maps,
  absent optional fields are absent (``has(self.f)`` is false), property names that are CEL
  keywords or contain ``.``, ``-``, ``/``, ``__`` are escaped as Kubernetes does
  (``__namespace__``, ``__dash__``...);
* the message is ``message``, or the evaluated ``messageExpression`` (falling back to ``message``
  or ``failed rule: <rule>`` when it fails), plus ``reason`` and ``fieldPath`` when given.

Kubernetes CEL libraries implemented as custom functions (semantics from the Kubernetes docs
"CEL in Kubernetes" and k8s.io/apiserver/pkg/cel/library):

* IP: ``isIP(s)``, ``ip(s)``, ``ip.isCanonical(s)``, ``string(ip)``, ``ip.family()``,
  ``ip.isUnspecified()``, ``ip.isLoopback()``, ``ip.isLinkLocalMulticast()``,
  ``ip.isLinkLocalUnicast()``, ``ip.isGlobalUnicast()``, ``==``;
* CIDR: ``isCIDR(s)``, ``cidr(s)``, ``string(cidr)``, ``cidr.containsIP(ip|string)``,
  ``cidr.containsCIDR(cidr|string)``, ``cidr.ip()``, ``cidr.masked()``, ``cidr.prefixLength()``;
* strings extension: ``charAt``, ``indexOf``, ``lastIndexOf``, ``lowerAscii``, ``upperAscii``,
  ``replace``, ``split``, ``substring``, ``trim``, ``reverse``, ``join`` (on lists),
  ``strings.quote``;
* regex: ``matches`` (RE2, cel-python's own), ``find``, ``findAll``;
* lists: ``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``, ``lastIndexOf``;
* sets: ``sets.contains``, ``sets.equivalent``, ``sets.intersects``;
* URLs: ``isURL(s)``, ``url(s)``, ``getScheme``, ``getHost``, ``getHostname``, ``getPort``,
  ``getEscapedPath``, ``getQuery``;
* quantities: ``isQuantity(s)``, ``quantity(s)``, ``sign``, ``isInteger``, ``asInteger``,
  ``asApproximateFloat``, ``add``, ``sub``, ``compareTo``, ``isGreaterThan``, ``isLessThan``, ``==``.

Not supported by cel-python 0.5 (``compile_all`` reports them): the optional-field syntax
``self.?field`` / ``optional.of``, and compile-time type checking and cost estimation (the API
server rejects rules whose estimated cost is too high, e.g. over lists without ``maxItems``).
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import datetime
import ipaddress
import re
from fractions import Fraction
from typing import Any, Iterable

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions

__all__ = [
    "RuleError", "validate", "compile_all", "evaluate", "crd_schema", "apply_defaults",
    "to_cel", "FUNCTIONS", "IP", "CIDR", "URL", "Quantity",
]


# --------------------------------------------------------------------------- errors & helpers

def _err(message: str) -> CELEvalError:
    return CELEvalError(message, ValueError, (message,))


class _Namespace:
    """The value of the identifiers ``ip``, ``cidr``, ``sets``, ``strings`` used as namespaces
    (``ip.isCanonical(s)`` parses as a method call on the variable ``ip``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<namespace {self.name}>"


NS_IP, NS_CIDR, NS_SETS, NS_STRINGS = (_Namespace(n) for n in ("ip", "cidr", "sets", "strings"))
_NAMESPACE_VARS = {"ip": NS_IP, "cidr": NS_CIDR, "sets": NS_SETS, "strings": NS_STRINGS}


# --------------------------------------------------------------------------- IP and CIDR

def _parse_ip(s: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(s, str):
        raise TypeError("ip() needs a string")
    if "%" in s:
        raise ValueError(f"IP address '{s}' with zone value is not allowed")
    try:
        addr = ipaddress.ip_address(s)  # rejects IPv4 leading zeros, like Go's netip
    except ValueError as ex:
        raise ValueError(f"IP Address '{s}' parse error during conversion from string: {ex}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise ValueError(f"IPv4-mapped IPv6 address '{s}' is not allowed")
    return addr


_BITS_RE = re.compile(r"^(0|[1-9][0-9]{0,2})$")


def _parse_cidr(s: Any) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    if not isinstance(s, str):
        raise TypeError("cidr() needs a string")
    addr_s, sep, bits_s = s.partition("/")
    if not sep or not _BITS_RE.match(bits_s):
        raise ValueError(f"network address parse error during conversion from string: '{s}'")
    if "%" in addr_s:
        raise ValueError(f"network address parse error: zone not allowed in '{s}'")
    try:
        addr = ipaddress.ip_address(addr_s)
    except ValueError as ex:
        raise ValueError(f"network address parse error during conversion from string: {ex}") from None
    bits = int(bits_s)
    if bits > addr.max_prefixlen:
        raise ValueError(f"network address parse error: prefix length {bits} too large in '{s}'")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise ValueError(f"IPv4-mapped IPv6 address '{s}' is not allowed")
    return addr, bits


class IP:
    """CEL value of type ``net.IP`` (Kubernetes IP library)."""

    __slots__ = ("addr",)

    def __init__(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self.addr = addr

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, IP) and other.addr == self.addr

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.addr)

    def __str__(self) -> str:
        return str(self.addr)

    def __repr__(self) -> str:
        return f"ip({str(self.addr)!r})"


class CIDR:
    """CEL value of type ``net.CIDR``: an address (host bits NOT cleared, as in Go's
    netip.Prefix) and a prefix length."""

    __slots__ = ("addr", "bits")

    def __init__(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address, bits: int) -> None:
        self.addr = addr
        self.bits = bits

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.addr}/{self.bits}", strict=False)

    def contains_ip(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return addr.version == self.addr.version and addr in self.network

    def contains_cidr(self, other: "CIDR") -> bool:
        return (other.addr.version == self.addr.version and other.bits >= self.bits
                and other.addr in self.network)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, CIDR) and (other.addr, other.bits) == (self.addr, self.bits)

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.addr, self.bits))

    def __str__(self) -> str:
        return f"{self.addr}/{self.bits}"

    def __repr__(self) -> str:
        return f"cidr({str(self)!r})"


def _as_ip(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(v, IP):
        return v.addr
    return _parse_ip(v)


def _as_cidr(v: Any) -> CIDR:
    if isinstance(v, CIDR):
        return v
    return CIDR(*_parse_cidr(v))


def _guard(fn):
    """Turn parse problems into CEL evaluation errors (so ``||`` can absorb them, as in CEL)."""

    def wrapper(*args):
        for a in args:
            if isinstance(a, CELEvalError):
                return a
        try:
            return fn(*args)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as ex:
            return _err(f"{fn.__name__.lstrip('_')}: {ex}")

    wrapper.__name__ = fn.__name__
    return wrapper


def _is_ip(s):
    try:
        _parse_ip(s)
        return celtypes.BoolType(True)
    except ValueError:
        return celtypes.BoolType(False)


def _is_cidr(s):
    try:
        _parse_cidr(s)
        return celtypes.BoolType(True)
    except ValueError:
        return celtypes.BoolType(False)


def _ip(x):
    if isinstance(x, CIDR):  # cidr.ip()
        return IP(x.addr)
    return IP(_parse_ip(x))


def _cidr(x):
    return CIDR(*_parse_cidr(x))


def _is_canonical(ns, s):
    if ns is not NS_IP:
        raise TypeError("isCanonical is ip.isCanonical(string)")
    return celtypes.BoolType(str(_parse_ip(s)) == s)


def _family(x):
    return celtypes.IntType(_as_ip(x).version)


def _ip_pred(name, fn):
    def pred(x):
        if not isinstance(x, IP):
            raise TypeError(f"{name}() applies to an ip")
        return celtypes.BoolType(fn(x.addr))

    pred.__name__ = name
    return pred


_V4_BCAST = ipaddress.IPv4Address("255.255.255.255")


def _go_is_global_unicast(a) -> bool:
    # Go's netip.Addr.IsGlobalUnicast: not unspecified, loopback, multicast, link-local
    # unicast, or the IPv4 broadcast address (private ranges ARE global unicast here).
    return not (a.is_unspecified or a.is_loopback or a.is_multicast
                or _link_local_unicast(a) or a == _V4_BCAST)


def _link_local_unicast(a) -> bool:
    if a.version == 4:
        return a in ipaddress.ip_network("169.254.0.0/16")
    return a in ipaddress.ip_network("fe80::/10")


def _link_local_multicast(a) -> bool:
    if a.version == 4:
        return a in ipaddress.ip_network("224.0.0.0/24")
    return (int(a) >> 112) & 0xFF0F == 0xFF02


def _contains_ip(c, x):
    if not isinstance(c, CIDR):
        raise TypeError("containsIP applies to a cidr")
    return celtypes.BoolType(c.contains_ip(_as_ip(x)))


def _contains_cidr(c, x):
    if not isinstance(c, CIDR):
        raise TypeError("containsCIDR applies to a cidr")
    return celtypes.BoolType(c.contains_cidr(_as_cidr(x)))


def _prefix_length(c):
    if not isinstance(c, CIDR):
        raise TypeError("prefixLength applies to a cidr")
    return celtypes.IntType(c.bits)


def _masked(c):
    if not isinstance(c, CIDR):
        raise TypeError("masked applies to a cidr")
    return CIDR(c.network.network_address, c.bits)


# --------------------------------------------------------------------------- URL (Go net/url)

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_OK = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:\[\]<>\"%\x80-\U0010ffff]*$")
_PORT_RE = re.compile(r"^(:[0-9]*)?$")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_PATH_KEEP = _UNRESERVED | frozenset(b"$&+,/:;=@")
_PATH_VALID_EXTRA = frozenset(b"!$&'()*+,;=:@[]%")
_PCT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _go_unescape(s: str, query: bool = False) -> str:
    if _PCT_RE.search(s):
        raise ValueError(f"invalid URL escape in '{s}'")
    if query:
        s = s.replace("+", " ")
    raw = bytearray()
    i = 0
    b = s.encode("utf-8")
    while i < len(b):
        if b[i] == 0x25:
            raw.append(int(b[i + 1:i + 3], 16))
            i += 3
        else:
            raw.append(b[i])
            i += 1
    return raw.decode("utf-8", errors="surrogateescape")


def _go_escape_path(s: str) -> str:
    out = []
    for byte in s.encode("utf-8", errors="surrogateescape"):
        out.append(chr(byte) if byte in _PATH_KEEP else f"%{byte:02X}")
    return "".join(out)


def _split_host_port(host: str) -> tuple[str, str]:
    name, port = host, ""
    colon = host.rfind(":")
    if colon != -1 and _PORT_RE.match(host[colon:]):
        name, port = host[:colon], host[colon + 1:]
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name, port


class URL:
    """CEL value of type ``net.URL``, parsed like Go's ``url.ParseRequestURI`` (what the
    Kubernetes URL library uses): an absolute URI or an absolute path."""

    __slots__ = ("raw", "scheme", "opaque", "host", "path", "raw_path", "raw_query")

    def __init__(self, raw: str) -> None:
        if not isinstance(raw, str):
            raise TypeError("url() needs a string")
        self.raw = raw
        if raw == "":
            raise ValueError("empty url")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
            raise ValueError("invalid control character in URL")
        m = _SCHEME_RE.match(raw)
        if m:
            self.scheme, rest = m.group(1).lower(), raw[m.end():]
        else:
            if raw.startswith(":"):
                raise ValueError("missing protocol scheme")
            self.scheme, rest = "", raw
        rest, _, self.raw_query = rest.partition("?")
        self.opaque = self.host = ""
        if not rest.startswith("/"):
            if self.scheme:
                self.opaque, self.path, self.raw_path = rest, "", ""
                return
            raise ValueError("invalid URI for request")
        if self.scheme and rest.startswith("//"):
            authority, slash, rest = rest[2:].partition("/")
            rest = slash + rest
            host = authority.rpartition("@")[2]
            if host.startswith("["):
                end = host.find("]")
                if end < 0:
                    raise ValueError("missing ']' in host")
                if not _PORT_RE.match(host[end + 1:]):
                    raise ValueError(f"invalid port {host[end + 1:]!r} after host")
            else:
                colon = host.rfind(":")
                if colon != -1 and not _PORT_RE.match(host[colon:]):
                    raise ValueError(f"invalid port {host[colon:]!r} after host")
            if not _HOST_OK.match(host):
                raise ValueError(f"invalid character in host name '{host}'")
            self.host = _go_unescape(host)
        self.path = _go_unescape(rest)
        self.raw_path = "" if _go_escape_path(self.path) == rest else rest

    def escaped_path(self) -> str:
        rp = self.raw_path
        if rp and all(b in _PATH_VALID_EXTRA or b in _PATH_KEEP or b >= 0x80
                      for b in rp.encode("utf-8")):
            try:
                if _go_unescape(rp) == self.path:
                    return rp
            except ValueError:
                pass
        if self.path == "*":
            return "*"
        return _go_escape_path(self.path)

    def query(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for part in self.raw_query.split("&"):
            if not part or ";" in part:
                continue
            k, _, v = part.partition("=")
            try:
                k, v = _go_unescape(k, query=True), _go_unescape(v, query=True)
            except ValueError:
                continue
            out.setdefault(k, []).append(v)
        return out

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, URL) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"url({self.raw!r})"


def _is_url(s):
    try:
        URL(s)
        return celtypes.BoolType(True)
    except (ValueError, TypeError):
        return celtypes.BoolType(False)


def _url_getter(name, fn):
    def getter(u):
        if not isinstance(u, URL):
            raise TypeError(f"{name}() applies to a url")
        return fn(u)

    getter.__name__ = name
    return getter


# --------------------------------------------------------------------------- strings, lists, sets

def _need_str(s, name):
    if not isinstance(s, str):
        raise TypeError(f"{name} applies to a string")


def _str_index_of(s, sub, offset=0):
    _need_str(s, "indexOf")
    if offset < 0 or offset > len(s):
        raise IndexError(f"index out of range: {offset}")
    return celtypes.IntType(s.find(sub, offset))


def _str_last_index_of(s, sub, offset=None):
    _need_str(s, "lastIndexOf")
    if offset is None:
        return celtypes.IntType(s.rfind(sub))
    if offset < 0 or offset > len(s):
        raise IndexError(f"index out of range: {offset}")
    return celtypes.IntType(s.rfind(sub, 0, offset + len(sub)))


def _cel_eq(a, b) -> bool:
    if isinstance(a, celtypes.BoolType) != isinstance(b, celtypes.BoolType):
        return False
    return a == b


def _list_index_of(lst, x):
    return celtypes.IntType(next((i for i, v in enumerate(lst) if _cel_eq(v, x)), -1))


def _list_last_index_of(lst, x):
    return celtypes.IntType(next((i for i in range(len(lst) - 1, -1, -1) if _cel_eq(lst[i], x)), -1))


def _index_of(x, *args):
    if isinstance(x, list):
        return _list_index_of(x, *args)
    return _str_index_of(x, *args)


def _last_index_of(x, *args):
    if isinstance(x, list):
        return _list_last_index_of(x, *args)
    return _str_last_index_of(x, *args)


def _char_at(s, i):
    _need_str(s, "charAt")
    if i < 0 or i > len(s):
        raise IndexError(f"index out of range: {i}")
    return celtypes.StringType(s[i:i + 1])


def _ascii_case(s, upper):
    _need_str(s, "lowerAscii/upperAscii")
    table = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if not upper:
        table = {v: k for k, v in table.items()}
    return celtypes.StringType(s.translate(table))


def _replace(s, old, new, n=-1):
    _need_str(s, "replace")
    return celtypes.StringType(s.replace(old, new, -1 if n < 0 else n))


def _split(s, sep, n=-1):
    _need_str(s, "split")
    if n == 0:
        return celtypes.ListType([])
    if sep == "":
        parts = list(s) if n < 0 or n >= len(s) else list(s[:n - 1]) + [s[n - 1:]]
    else:
        parts = s.split(sep, -1 if n < 0 else n - 1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _substring(s, start, end=None):
    _need_str(s, "substring")
    end = len(s) if end is None else end
    if start < 0 or start > len(s) or end < 0 or end > len(s):
        raise IndexError(f"index out of range: {start}:{end}")
    if start > end:
        raise IndexError(f"invalid substring range. start: {start}, end: {end}")
    return celtypes.StringType(s[start:end])


def _trim(s):
    _need_str(s, "trim")
    return celtypes.StringType(s.strip())


def _reverse(x):
    if isinstance(x, list):
        return celtypes.ListType(list(reversed(x)))
    _need_str(x, "reverse")
    return celtypes.StringType(x[::-1])


def _join(lst, sep=""):
    if not isinstance(lst, list) or not all(isinstance(v, str) for v in lst):
        raise TypeError("join applies to a list of strings")
    return celtypes.StringType(sep.join(lst))


def _quote(ns, s):
    if ns is not NS_STRINGS:
        raise TypeError("quote is strings.quote(string)")
    esc = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
           "\v": "\\v", "\\": "\\\\", '"': '\\"'}
    return celtypes.StringType('"' + "".join(esc.get(c, c) for c in s) + '"')


def _need_list(x, name):
    if not isinstance(x, list):
        raise TypeError(f"{name} applies to a list")


def _is_sorted(lst):
    _need_list(lst, "isSorted")
    return celtypes.BoolType(all(lst[i] <= lst[i + 1] for i in range(len(lst) - 1)))


def _sum(lst):
    _need_list(lst, "sum")
    if not lst:
        return celtypes.IntType(0)
    total = lst[0]
    for v in lst[1:]:
        total = total + v
    return total


def _min(lst):
    _need_list(lst, "min")
    if not lst:
        raise ValueError("min called on empty list")
    return min(lst)


def _max(lst):
    _need_list(lst, "max")
    if not lst:
        raise ValueError("max called on empty list")
    return max(lst)


def _sets_fn(name, fn):
    def sets_fn(ns, a, b):
        if ns is not NS_SETS:
            raise TypeError(f"{name} is sets.{name}(list, list)")
        _need_list(a, name)
        _need_list(b, name)
        return celtypes.BoolType(fn(a, b))

    sets_fn.__name__ = name
    return sets_fn


def _in(x, lst):
    return any(_cel_eq(v, x) for v in lst)


_sets_contains = _sets_fn("contains", lambda a, b: all(_in(x, a) for x in b))
_sets_equivalent = _sets_fn("equivalent",
                            lambda a, b: all(_in(x, a) for x in b) and all(_in(x, b) for x in a))
_sets_intersects = _sets_fn("intersects", lambda a, b: any(_in(x, a) for x in b))


def _contains(x, *args):
    if x is NS_SETS:
        return _sets_contains(x, *args)
    return base_functions["contains"](x, *args)


def _find(s, pattern):
    import re2

    _need_str(s, "find")
    m = re2.search(pattern, s)
    return celtypes.StringType(m.group(0) if m else "")


def _find_all(s, pattern, n=-1):
    import re2

    _need_str(s, "findAll")
    if n == 0:
        return celtypes.ListType([])
    found = [m.group(0) for m in re2.finditer(pattern, s)]
    if n > 0:
        found = found[:n]
    return celtypes.ListType([celtypes.StringType(f) for f in found])


def _string(x):
    if isinstance(x, (IP, CIDR, URL, Quantity)):
        return celtypes.StringType(str(x))
    return celtypes.StringType(x)


# --------------------------------------------------------------------------- quantities

_QTY_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_QTY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
               "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 10**3), None: 1,
               "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


class Quantity:
    """CEL value of type ``kubernetes.Quantity`` (resource.Quantity: ``500m``, ``1Gi``, ``1e3``),
    held as an exact fraction."""

    __slots__ = ("raw", "value")

    def __init__(self, raw: Any, value: Fraction | None = None) -> None:
        if value is not None:
            self.raw, self.value = str(raw), value
            return
        if not isinstance(raw, str):
            raise TypeError("quantity() needs a string")
        m = _QTY_RE.match(raw)
        if not m:
            raise ValueError(f"quantities must match the regular expression: '{raw}'")
        number, suffix = m.group(1), m.group(2)
        if suffix and suffix[0] in "eE" and suffix not in _QTY_SUFFIX:
            mult = Fraction(10) ** int(suffix[1:])
        else:
            mult = Fraction(_QTY_SUFFIX[suffix])
        self.raw, self.value = raw, Fraction(number) * mult

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Quantity) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"quantity({self.raw!r})"


def _is_quantity(s):
    try:
        Quantity(s)
        return celtypes.BoolType(True)
    except (ValueError, TypeError):
        return celtypes.BoolType(False)


def _q(x, name):
    if not isinstance(x, Quantity):
        raise TypeError(f"{name} applies to a quantity")
    return x


def _q_arg(x):
    if isinstance(x, Quantity):
        return x.value
    if isinstance(x, int) and not isinstance(x, celtypes.BoolType):
        return Fraction(int(x))
    raise TypeError("expected a quantity or an int")


def _q_as_integer(q):
    v = _q(q, "asInteger").value
    if v.denominator != 1 or not -2**63 <= v.numerator < 2**63:
        raise ValueError(f"cannot convert value to integer: {q}")
    return celtypes.IntType(v.numerator)


def _q_is_integer(q):
    v = _q(q, "isInteger").value
    return celtypes.BoolType(v.denominator == 1 and -2**63 <= v.numerator < 2**63)


def _q_add(q, other):
    v = _q(q, "add").value + _q_arg(other)
    return Quantity(str(float(v)) if v.denominator != 1 else str(v.numerator), v)


def _q_sub(q, other):
    v = _q(q, "sub").value - _q_arg(other)
    return Quantity(str(float(v)) if v.denominator != 1 else str(v.numerator), v)


def _q_compare(q, other):
    a, b = _q(q, "compareTo").value, _q(other, "compareTo").value
    return celtypes.IntType((a > b) - (a < b))


# --------------------------------------------------------------------------- optionals (optionalOldSelf)

class Optional:
    """``optional`` value bound to ``oldSelf`` for rules with ``optionalOldSelf: true``."""

    __slots__ = ("present", "val")

    def __init__(self, present: bool, val: Any = None) -> None:
        self.present, self.val = present, val

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Optional) and (self.present, self.val) == (other.present, other.val)

    def __hash__(self) -> int:
        return hash(self.present)

    def __repr__(self) -> str:
        return f"optional.of({self.val!r})" if self.present else "optional.none()"


def _has_value(o):
    if not isinstance(o, Optional):
        raise TypeError("hasValue applies to an optional")
    return celtypes.BoolType(o.present)


def _value(o):
    if not isinstance(o, Optional):
        raise TypeError("value applies to an optional")
    if not o.present:
        raise ValueError("optional.none() dereference")
    return o.val


def _or_value(o, default):
    if not isinstance(o, Optional):
        raise TypeError("orValue applies to an optional")
    return o.val if o.present else default


FUNCTIONS: dict[str, Any] = {
    name: _guard(fn) for name, fn in {
        # IP / CIDR
        "isIP": _is_ip, "ip": _ip, "isCanonical": _is_canonical, "family": _family,
        "isUnspecified": _ip_pred("isUnspecified", lambda a: a.is_unspecified),
        "isLoopback": _ip_pred("isLoopback", lambda a: a.is_loopback),
        "isLinkLocalMulticast": _ip_pred("isLinkLocalMulticast", _link_local_multicast),
        "isLinkLocalUnicast": _ip_pred("isLinkLocalUnicast", _link_local_unicast),
        "isGlobalUnicast": _ip_pred("isGlobalUnicast", _go_is_global_unicast),
        "isCIDR": _is_cidr, "cidr": _cidr, "containsIP": _contains_ip,
        "containsCIDR": _contains_cidr, "prefixLength": _prefix_length, "masked": _masked,
        # URL
        "isURL": _is_url, "url": lambda s: URL(s),
        "getScheme": _url_getter("getScheme", lambda u: celtypes.StringType(u.scheme)),
        "getHost": _url_getter("getHost", lambda u: celtypes.StringType(u.host)),
        "getHostname": _url_getter(
            "getHostname", lambda u: celtypes.StringType(_split_host_port(u.host)[0])),
        "getPort": _url_getter("getPort", lambda u: celtypes.StringType(_split_host_port(u.host)[1])),
        "getEscapedPath": _url_getter("getEscapedPath",
                                      lambda u: celtypes.StringType(u.escaped_path())),
        "getQuery": _url_getter("getQuery", lambda u: celtypes.MapType({
            celtypes.StringType(k): celtypes.ListType([celtypes.StringType(x) for x in v])
            for k, v in u.query().items()})),
        # strings extension
        "charAt": _char_at, "indexOf": _index_of, "lastIndexOf": _last_index_of,
        "lowerAscii": lambda s: _ascii_case(s, upper=False),
        "upperAscii": lambda s: _ascii_case(s, upper=True),
        "replace": _replace, "split": _split, "substring": _substring, "trim": _trim,
        "reverse": _reverse, "join": _join, "quote": _quote,
        # regex
        "find": _find, "findAll": _find_all,
        # lists and sets
        "isSorted": _is_sorted, "sum": _sum, "min": _min, "max": _max, "contains": _contains,
        "equivalent": _sets_equivalent, "intersects": _sets_intersects,
        # quantities
        "isQuantity": _is_quantity, "quantity": lambda s: Quantity(s),
        "sign": lambda q: celtypes.IntType((_q(q, "sign").value > 0) - (q.value < 0)),
        "isInteger": _q_is_integer, "asInteger": _q_as_integer,
        "asApproximateFloat": lambda q: celtypes.DoubleType(float(_q(q, "asApproximateFloat").value)),
        "add": _q_add, "sub": _q_sub, "compareTo": _q_compare,
        "isGreaterThan": lambda q, o: celtypes.BoolType(_q(q, "isGreaterThan").value > _q(o, "isGreaterThan").value),
        "isLessThan": lambda q, o: celtypes.BoolType(_q(q, "isLessThan").value < _q(o, "isLessThan").value),
        # conversions and optionals
        "string": _string, "hasValue": _has_value, "value": _value, "orValue": _or_value,
    }.items()
}

MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter", "dyn"})
KNOWN_FUNCTIONS = frozenset(base_functions) | frozenset(FUNCTIONS) | MACROS

# --------------------------------------------------------------------------- values

_CEL_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function",
    "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"})
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def escape_property_name(name: str) -> str:
    """Kubernetes' escaping of property names for CEL field selection."""
    if name in _CEL_RESERVED:
        return f"__{name}__"
    out = (name.replace("__", "__underscores__").replace(".", "__dot__")
           .replace("-", "__dash__").replace("/", "__slash__"))
    return out


def _parse_duration(s: str) -> celtypes.DurationType:
    # Kubernetes accepts Go durations ("1h30m", "300ms"); celpy's DurationType takes "<n>s"-ish
    # strings, so convert.
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"([-+]?)((?:\d+(?:\.\d*)?(?:ns|us|µs|ms|s|m|h))+)", s)
    if not m:
        raise ValueError(f"invalid duration '{s}'")
    total = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", m.group(2)))
    if m.group(1) == "-":
        total = -total
    return celtypes.DurationType(datetime.timedelta(seconds=total))


def to_cel(value: Any, schema: dict | None = None) -> Any:
    """Convert a JSON-like value to CEL, typed by its structural schema node (may be None)."""
    schema = schema or {}
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    typ = schema.get("type")
    if isinstance(value, int):
        return celtypes.DoubleType(value) if typ == "number" else celtypes.IntType(value)
    if isinstance(value, float):
        if typ == "integer" and value.is_integer():
            return celtypes.IntType(int(value))
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        fmt = schema.get("format")
        try:
            if typ == "string" and fmt == "date-time":
                return celtypes.TimestampType(value)
            if typ == "string" and fmt == "duration":
                return _parse_duration(value)
            if typ == "string" and fmt == "byte":
                return celtypes.BytesType(base64.b64decode(value))
        except (ValueError, TypeError):
            pass
        return celtypes.StringType(value)
    if isinstance(value, (list, tuple)):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        return celtypes.ListType([to_cel(v, items) for v in value])
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            if k in props:
                out[celtypes.StringType(escape_property_name(k))] = to_cel(v, props[k])
            else:
                out[celtypes.StringType(k)] = to_cel(v, addl if isinstance(addl, dict) else None)
        return celtypes.MapType(out)
    if isinstance(value, datetime.datetime):
        return celtypes.TimestampType(value)
    if isinstance(value, datetime.date):  # YAML loads unquoted dates as date objects
        return celtypes.StringType(value.isoformat())
    raise TypeError(f"cannot convert {type(value).__name__} to CEL")


def _from_cel(v: Any) -> Any:
    if isinstance(v, celtypes.BoolType):
        return bool(v)
    if isinstance(v, celtypes.StringType):
        return str(v)
    return v


# --------------------------------------------------------------------------- compile & evaluate

_ENV = celpy.Environment()
_AST_CACHE: dict[str, Any] = {}


def _compile(rule: str):
    ast = _AST_CACHE.get(rule)
    if ast is None:
        ast = _AST_CACHE[rule] = _ENV.compile(rule)
    return ast


def _idents(ast) -> set[str]:
    return {t.children[0].value for t in ast.iter_subtrees() if t.data == "ident"}


def references_old_self(rule: str) -> bool:
    return "oldSelf" in _idents(_compile(rule))


def check_rule(rule: str, extra_vars: Iterable[str] = ()) -> list[str]:
    """Parse a rule and check it only uses known functions and variables. Returns problems."""
    try:
        ast = _compile(rule)
    except Exception as ex:  # celpy raises CELParseError (and lark errors) for syntax
        msg = str(ex).splitlines()[0] if str(ex) else type(ex).__name__
        if ".?" in rule or "optional." in rule:
            msg += " (the optional syntax self.?field is not supported by cel-python)"
        return [f"syntax error: {msg}"]
    problems = []
    bound: set[str] = set()
    for t in ast.iter_subtrees():
        if t.data == "member_dot_arg" and t.children[1].value in MACROS and t.children[2] is not None:
            first = t.children[2].children[0] if t.children[2].children else None
            if first is not None:
                names = [n.children[0].value for n in first.iter_subtrees() if n.data == "ident"]
                if len(names) == 1:
                    bound.add(names[0])
    allowed_vars = {"self", "oldSelf", *(_NAMESPACE_VARS), *bound, *extra_vars,
                    "int", "uint", "double", "bool", "string", "bytes", "list", "map",
                    "null_type", "type", "duration", "timestamp"}
    for t in ast.iter_subtrees():
        if t.data == "ident_arg" and t.children[0].value not in KNOWN_FUNCTIONS:
            problems.append(f"unknown function {t.children[0].value}()")
        elif t.data == "member_dot_arg" and t.children[1].value not in KNOWN_FUNCTIONS:
            problems.append(f"unknown method .{t.children[1].value}()")
        elif t.data == "ident" and t.children[0].value not in allowed_vars:
            problems.append(f"undeclared variable {t.children[0].value}")
    return sorted(set(problems))


def evaluate(rule: str, self_value: Any = None, old_self: Any = None, *, cel_values: bool = False,
             has_old: bool | None = None, **variables: Any) -> Any:
    """Evaluate one CEL expression. ``self_value``/``old_self`` are JSON-like (converted with
    :func:`to_cel` without schema) unless ``cel_values``. Raises CELEvalError on errors and
    returns Python bool/str for CEL bools/strings, CEL values otherwise."""
    act: dict[str, Any] = dict(_NAMESPACE_VARS)
    conv = (lambda v: v) if cel_values else to_cel
    act["self"] = conv(self_value)
    if has_old if has_old is not None else old_self is not None:
        act["oldSelf"] = conv(old_self)
    for k, v in variables.items():
        act[k] = conv(v)
    prog = _ENV.program(_compile(rule), functions=FUNCTIONS)
    return _from_cel(prog.evaluate(act))


# --------------------------------------------------------------------------- schema helpers

def crd_schema(crd_or_schema: dict, version: str | None = None) -> dict:
    """The ``openAPIV3Schema`` of a CRD (version ``version``, else ``v1alpha1`` when served,
    else the storage version), of a CRD version entry, or the schema itself."""
    if "spec" in crd_or_schema and isinstance(crd_or_schema["spec"], dict) \
            and "versions" in crd_or_schema["spec"]:
        versions = crd_or_schema["spec"]["versions"]
        by_name = {v["name"]: v for v in versions}
        if version is not None:
            if version not in by_name:
                raise KeyError(f"CRD has no version {version!r} (has {sorted(by_name)})")
            chosen = by_name[version]
        elif "v1alpha1" in by_name:
            chosen = by_name["v1alpha1"]
        else:
            chosen = next((v for v in versions if v.get("storage")), versions[0])
        return chosen["schema"]["openAPIV3Schema"]
    if "schema" in crd_or_schema and "openAPIV3Schema" in crd_or_schema["schema"]:
        return crd_or_schema["schema"]["openAPIV3Schema"]
    if "openAPIV3Schema" in crd_or_schema:
        return crd_or_schema["openAPIV3Schema"]
    return crd_or_schema


def apply_defaults(schema: dict, obj: Any) -> Any:
    """Return a deep copy of ``obj`` with structural-schema ``default`` values applied the way
    the API server does (absent fields, and null fields that are not nullable, of objects that
    are present)."""
    obj = copy.deepcopy(obj)
    _default_in_place(schema, obj)
    return obj


def _default_in_place(schema: dict, value: Any) -> None:
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, sub in props.items():
            if "default" in sub and (k not in value or (value[k] is None and not sub.get("nullable"))):
                value[k] = copy.deepcopy(sub["default"])
        for k, sub in props.items():
            if k in value:
                _default_in_place(sub, value[k])
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict) and not props:
            for v in value.values():
                _default_in_place(addl, v)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for v in value:
            _default_in_place(schema["items"], v)


# --------------------------------------------------------------------------- validation walk

@dataclasses.dataclass(frozen=True)
class RuleError:
    """A failed (or failing to evaluate) ``x-kubernetes-validations`` rule."""

    path: str                 # field path of the schema node, e.g. "spec.managementNetwork"
    rule: str
    message: str              # message, evaluated messageExpression, or "failed rule: <rule>"
    reason: str | None = None      # the rule's reason (FieldValueInvalid, FieldValueForbidden...)
    field_path: str | None = None  # the rule's fieldPath (relative JSON path), when given
    error: str | None = None       # set when the rule did not evaluate to a bool (eval error)

    @property
    def full_path(self) -> str:
        """``path`` joined with ``fieldPath`` (where the API server reports the error)."""
        if not self.field_path:
            return self.path
        fp = self.field_path
        return (self.path + fp) if fp.startswith((".", "[")) else f"{self.path}.{fp}".lstrip(".")

    def __str__(self) -> str:
        where = self.full_path or "<root>"
        return f"{where}: {self.message}" + (f" (evaluation error: {self.error})" if self.error else "")


_MISSING = object()


def validate(crd_or_schema: dict, obj: dict, old: dict | None = None, *,
             version: str | None = None, defaults: bool = True,
             ratcheting: bool = True) -> list[RuleError]:
    """Evaluate every CEL rule of the CRD schema against ``obj`` (and ``old`` for updates).

    ``ratcheting`` (Kubernetes >= 1.30, CRDValidationRatcheting): on update, a rule that does
    not use ``oldSelf`` is not enforced on a value that is unchanged from ``old``."""
    schema = crd_schema(crd_or_schema, version)
    if defaults:
        obj = apply_defaults(schema, obj)
        if old is not None:
            old = apply_defaults(schema, old)
    out: list[RuleError] = []
    _walk(schema, obj, old if old is not None else _MISSING, "", out, ratcheting)
    return out


def _join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(schema: dict, value: Any, old: Any, path: str, out: list[RuleError],
          ratcheting: bool = True) -> None:
    if value is None or not isinstance(schema, dict):
        return
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        _eval_rules(schema, rules, value, old, path, out, ratcheting)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, sub in props.items():
            if k in value:
                o = old.get(k, _MISSING) if isinstance(old, dict) else _MISSING
                _walk(sub, value[k], o, _join_path(path, k), out, ratcheting)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict) and not props:
            for k, v in value.items():
                o = old.get(k, _MISSING) if isinstance(old, dict) else _MISSING
                _walk(addl, v, o, f"{path}[{k}]", out, ratcheting)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") or []
        correlate = schema.get("x-kubernetes-list-type") == "map" and keys and isinstance(old, list)
        for i, v in enumerate(value):
            o = _MISSING
            if correlate and isinstance(v, dict):
                kv = tuple(v.get(k) for k in keys)
                o = next((x for x in old if isinstance(x, dict) and tuple(x.get(k) for k in keys) == kv),
                         _MISSING)
            _walk(items, v, o, f"{path}[{i}]", out, ratcheting)


def _eval_rules(schema, rules, value, old, path, out, ratcheting=True) -> None:
    unchanged = ratcheting and old is not _MISSING and old == value
    self_cel = to_cel(value, schema)
    old_cel = None
    if old is not _MISSING and old is not None:
        old_cel = to_cel(old, schema)
    for r in rules:
        rule = r["rule"]
        act: dict[str, Any] = dict(_NAMESPACE_VARS)
        act["self"] = self_cel
        if unchanged and not references_old_self(rule):
            continue  # validation ratcheting: an unchanged value keeps passing
        if references_old_self(rule):
            if r.get("optionalOldSelf"):
                act["oldSelf"] = Optional(old_cel is not None, old_cel)
            elif old_cel is None:
                continue  # transition rule: skipped on create / uncorrelatable values
            else:
                act["oldSelf"] = old_cel
        error = None
        try:
            result = _ENV.program(_compile(rule), functions=FUNCTIONS).evaluate(act)
            if not isinstance(result, celtypes.BoolType):
                ok, error = False, f"rule did not evaluate to a bool: {result!r}"
            else:
                ok = bool(result)
        except CELEvalError as ex:
            ok, error = False, str(ex.args[0]) if ex.args else repr(ex)
        if ok:
            continue
        message = r.get("message") or f"failed rule: {rule}"
        if r.get("messageExpression") and error is None:
            try:
                m = _ENV.program(_compile(r["messageExpression"]), functions=FUNCTIONS).evaluate(act)
                if isinstance(m, str) and m.strip() and "\n" not in m:
                    message = str(m)
            except CELEvalError:
                pass
        out.append(RuleError(path=path, rule=rule, message=message, reason=r.get("reason"),
                             field_path=r.get("fieldPath"), error=error))


# --------------------------------------------------------------------------- compile_all

def iter_rules(schema: dict, path: str = "") -> Iterable[tuple[str, dict]]:
    """Yield (path, rule entry) for every ``x-kubernetes-validations`` entry in a schema."""
    if not isinstance(schema, dict):
        return
    for r in schema.get("x-kubernetes-validations") or []:
        yield path, r
    for k, sub in (schema.get("properties") or {}).items():
        yield from iter_rules(sub, _join_path(path, k))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_rules(schema["additionalProperties"], f"{path}[*]")
    if isinstance(schema.get("items"), dict):
        yield from iter_rules(schema["items"], f"{path}[*]")


def compile_all(crd_or_schema: dict, version: str | None = None) -> list[str]:
    """Parse and check every rule and messageExpression of every version of a CRD (or of one
    schema). Returns a list of problems (empty when all compile)."""
    if "spec" in crd_or_schema and "versions" in (crd_or_schema.get("spec") or {}):
        names = [version] if version else [v["name"] for v in crd_or_schema["spec"]["versions"]]
        schemas = [(n, crd_schema(crd_or_schema, n)) for n in names]
    else:
        schemas = [("", crd_schema(crd_or_schema))]
    problems = []
    for vname, schema in schemas:
        prefix = f"{vname}: " if vname else ""
        for path, r in iter_rules(schema):
            where = f"{prefix}{path or '<root>'}"
            if "rule" not in r:
                problems.append(f"{where}: validation without a rule: {r}")
                continue
            for p in check_rule(r["rule"]):
                problems.append(f"{where}: rule {r['rule']!r}: {p}")
            if r.get("messageExpression"):
                for p in check_rule(r["messageExpression"]):
                    problems.append(f"{where}: messageExpression {r['messageExpression']!r}: {p}")
            if r.get("optionalOldSelf") and not references_old_self(r["rule"]):
                problems.append(f"{where}: optionalOldSelf set on a rule without oldSelf")
            unknown = set(r) - {"rule", "message", "messageExpression", "reason", "fieldPath",
                                "optionalOldSelf"}
            if unknown:
                problems.append(f"{where}: unknown keys {sorted(unknown)}")
            if r.get("reason") not in (None, "FieldValueInvalid", "FieldValueForbidden",
                                       "FieldValueRequired", "FieldValueDuplicate"):
                problems.append(f"{where}: invalid reason {r.get('reason')!r}")
    return problems
