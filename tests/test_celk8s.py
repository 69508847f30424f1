"""Tests for tests/celk8s.py: the Kubernetes CEL libraries (against the examples and semantics
documented in "CEL in Kubernetes" / k8s.io/apiserver/pkg/cel/library) and the schema walk."""
import copy

import pytest
from celpy.evaluation import CELEvalError

import celk8s
from celk8s import RuleError, compile_all, evaluate, validate

# ----------------------------------------------------------------------------- libraries

TRUE_EXPRESSIONS = [
    # IP library
    "isIP('127.0.0.1')", "isIP('::1')", "!isIP('1.2.3')", "!isIP('1.2.3.04')",
    "!isIP('fe80::1%eth0')", "!isIP('::ffff:1.2.3.4')", "!isIP('127.0.0.1/8')", "!isIP('')",
    "ip('127.0.0.1') == ip('127.0.0.1')", "ip('::1') != ip('127.0.0.1')",
    "string(ip('2001:DB8::1')) == '2001:db8::1'",
    "ip('127.0.0.1').family() == 4", "ip('::1').family() == 6",
    "ip('0.0.0.0').isUnspecified()", "ip('::').isUnspecified()", "!ip('127.0.0.1').isUnspecified()",
    "ip('127.0.0.1').isLoopback()", "ip('127.1.2.3').isLoopback()", "ip('::1').isLoopback()",
    "!ip('10.0.0.1').isLoopback()",
    "ip('224.0.0.1').isLinkLocalMulticast()", "!ip('224.0.1.1').isLinkLocalMulticast()",
    "ip('ff02::1').isLinkLocalMulticast()", "!ip('ff05::1').isLinkLocalMulticast()",
    "ip('169.254.169.254').isLinkLocalUnicast()", "ip('fe80::1').isLinkLocalUnicast()",
    "!ip('192.168.0.1').isLinkLocalUnicast()",
    "ip('192.168.0.1').isGlobalUnicast()", "ip('2001:db8::1').isGlobalUnicast()",
    "!ip('255.255.255.255').isGlobalUnicast()", "!ip('127.0.0.1').isGlobalUnicast()",
    "!ip('224.0.0.1').isGlobalUnicast()", "!ip('fe80::1').isGlobalUnicast()",
    "ip.isCanonical('127.0.0.1')", "ip.isCanonical('2001:db8::abcd')",
    "!ip.isCanonical('2001:DB8::ABCD')", "!ip.isCanonical('2001:db8::0:0:0:abcd')",
    # CIDR library
    "isCIDR('192.168.0.0/16')", "isCIDR('2001:db8::/32')", "isCIDR('192.168.0.1/24')",
    "!isCIDR('192.168.0.0')", "!isCIDR('192.168.0.0/33')", "!isCIDR('2001:db8::/129')",
    "!isCIDR('::ffff:1.2.3.0/120')", "!isCIDR('10.0.0.0/-1')", "!isCIDR('10.0.0.0/08')",
    "!isCIDR('fe80::%eth0/64')", "!isCIDR('not/a/cidr')",
    "cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))",
    "cidr('192.168.0.0/24').containsIP('192.168.0.254')",
    "!cidr('192.168.0.0/24').containsIP('192.168.1.1')",
    "!cidr('0.0.0.0/0').containsIP('::1')", "cidr('::/0').containsIP('2001:db8::1')",
    "cidr('192.168.0.1/24').containsIP('192.168.0.200')",
    "cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/25'))",
    "cidr('192.168.0.0/24').containsCIDR('192.168.0.128/25')",
    "cidr('192.168.0.0/24').containsCIDR('192.168.0.0/24')",
    "!cidr('192.168.0.0/24').containsCIDR('192.168.0.0/23')",
    "!cidr('192.168.0.0/24').containsCIDR('192.168.1.0/25')",
    "!cidr('0.0.0.0/0').containsCIDR('::/64')",
    "cidr('192.168.0.0/24').prefixLength() == 24", "cidr('2001:db8::/32').prefixLength() == 32",
    "cidr('192.168.0.1/24').ip() == ip('192.168.0.1')",
    "cidr('192.168.0.1/24').ip().family() == 4",
    "cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')",
    "string(cidr('192.168.0.1/24').masked()) == '192.168.0.0/24'",
    "string(cidr('192.168.0.1/24')) == '192.168.0.1/24'",
    "cidr('2001:db8::1/32').masked() == cidr('2001:db8::/32')",
    "cidr('10.0.0.0/8') == cidr('10.0.0.0/8')", "cidr('10.0.0.0/8') != cidr('10.0.0.0/9')",
    # strings extension
    "'hello mellow'.indexOf('') == 0", "'hello mellow'.indexOf('ello') == 1",
    "'hello mellow'.indexOf('jello') == -1", "'hello mellow'.indexOf('ello', 6) == 7",
    "'hello mellow'.lastIndexOf('') == 12", "'hello mellow'.lastIndexOf('ello') == 7",
    "'hello mellow'.lastIndexOf('ello', 6) == 1",
    "'hello'.charAt(4) == 'o'", "'hello'.charAt(5) == ''",
    "'TacoCat'.lowerAscii() == 'tacocat'", "'TacoCÆt Xii'.lowerAscii() == 'tacocÆt xii'",
    "'tacoCat'.upperAscii() == 'TACOCAT'", "'tacoCαt'.upperAscii() == 'TACOCαT'",
    "'hello hello'.replace('he', 'we') == 'wello wello'",
    "'hello hello'.replace('he', 'we', 1) == 'wello hello'",
    "'hello hello'.replace('he', 'we', 0) == 'hello hello'",
    "'hello hello'.replace('he', 'we', -1) == 'wello wello'",
    "'hello hello hello'.split(' ') == ['hello', 'hello', 'hello']",
    "'hello hello hello'.split(' ', 0) == []", "'hello hello hello'.split(' ', 1) == ['hello hello hello']",
    "'hello hello hello'.split(' ', 2) == ['hello', 'hello hello']",
    "'hello hello hello'.split(' ', -1) == ['hello', 'hello', 'hello']",
    "'abc'.split('') == ['a', 'b', 'c']",
    "'tacocat'.substring(4) == 'cat'", "'tacocat'.substring(0, 4) == 'taco'",
    "'tacocat'.substring(7) == ''",
    "'  \\ttrim\\n    '.trim() == 'trim'",
    "['hello', 'mellow'].join() == 'hellomellow'", "['hello', 'mellow'].join(' ') == 'hello mellow'",
    "[].join() == ''", "'gums'.reverse() == 'smug'",
    "strings.quote('single-quote with \"double quote\"') == '\"single-quote with \\\\\"double quote\\\\\"\"'",
    # regex
    "'abc 123'.matches('[0-9]+')", "!'abc'.matches('^[0-9]+$')",
    "'abc 123'.find('[0-9]+') == '123'", "'abc'.find('[0-9]+') == ''",
    "'123 abc 456'.findAll('[0-9]+') == ['123', '456']",
    "'123 abc 456'.findAll('[0-9]+', 1) == ['123']",
    # lists
    "[1, 2, 3].isSorted()", "!['b', 'a'].isSorted()", "[].isSorted()", "['a', 'b'].isSorted()",
    "[1, 2, 3].sum() == 6", "[1.5, 2.5].sum() == 4.0", "[].sum() == 0",
    "[1, 2, 3].min() == 1", "[1, 2, 3].max() == 3", "['b', 'a'].min() == 'a'",
    "[1, 2, 2, 3].indexOf(2) == 1", "[1, 2, 2, 3].lastIndexOf(2) == 2",
    "['a', 'b'].indexOf('c') == -1", "[true, 1].indexOf(1) == 1",
    # sets
    "sets.contains([1, 2, 3], [3, 2])", "!sets.contains([1, 2], [3])", "sets.contains([1], [])",
    "sets.equivalent([1, 2, 2], [2, 1])", "!sets.equivalent([1], [1, 2])",
    "sets.intersects([1, 2], [2, 3])", "!sets.intersects([1], [2])",
    "'abc'.contains('b')",
    # URLs
    "isURL('https://example.com')", "isURL('https://example.com:80/path?query=val#fragment')",
    "isURL('/absolute-path')", "!isURL('../relative-path')", "!isURL('not a url')",
    "!isURL('')", "!isURL('https://example.com:port/')", "!isURL('https://exa mple.com/')",
    "url('https://example.com:80/').getScheme() == 'https'", "url('/absolute-path').getScheme() == ''",
    "url('https://example.com:80/').getHost() == 'example.com:80'",
    "url('https://example.com/').getHost() == 'example.com'",
    "url('https://[::1]:80/').getHost() == '[::1]:80'", "url('https://[::1]/').getHost() == '[::1]'",
    "url('/path').getHost() == ''",
    "url('https://example.com:80/').getHostname() == 'example.com'",
    "url('https://127.0.0.1:80/').getHostname() == '127.0.0.1'",
    "url('https://[::1]:80/').getHostname() == '::1'",
    "url('https://example.com:80/').getPort() == '80'", "url('https://example.com/').getPort() == ''",
    "url('https://example.com/path').getEscapedPath() == '/path'",
    "url('https://example.com/path with spaces/').getEscapedPath() == '/path%20with%20spaces/'",
    "url('https://example.com/a%2Fb').getEscapedPath() == '/a%2Fb'",
    "url('https://example.com').getEscapedPath() == ''",
    "url('https://example.com/path?k1=a&k2=b&k2=c').getQuery() == {'k1': ['a'], 'k2': ['b', 'c']}",
    "url('https://example.com/path?key=a+b%21').getQuery() == {'key': ['a b!']}",
    "url('https://example.com/').getQuery() == {}",
    "url('https://user:pw@example.com:8443/').getHost() == 'example.com:8443'",
    # quantities
    "isQuantity('1.3G')", "isQuantity('500m')", "isQuantity('1Gi')", "isQuantity('1e3')", "isQuantity('-2')",
    "!isQuantity('1.3GiB')", "!isQuantity('one')", "!isQuantity('')", "!isQuantity('1 Gi')",
    "quantity('50k') == quantity('50000')", "quantity('1Gi') == quantity('1024Mi')",
    "quantity('1Gi') != quantity('1G')", "quantity('500m') == quantity('0.5')",
    "quantity('50k').isInteger()", "!quantity('9999999999999999999999999999999999999G').isInteger()",
    "!quantity('50m').isInteger()", "quantity('50k').asInteger() == 50000",
    "quantity('50.5').asApproximateFloat() == 50.5", "quantity('1e3').asInteger() == 1000",
    "quantity('50k').sign() == 1", "quantity('-50k').sign() == -1", "quantity('0').sign() == 0",
    "quantity('50k').add(quantity('20k')) == quantity('70k')", "quantity('50k').add(20) == quantity('50020')",
    "quantity('50k').sub(quantity('20k')) == quantity('30k')", "quantity('50k').sub(20) == quantity('49980')",
    "quantity('200M').compareTo(quantity('0.2G')) == 0", "quantity('50M').compareTo(quantity('50Mi')) == -1",
    "quantity('50Mi').compareTo(quantity('50M')) == 1",
    "quantity('50Mi').isGreaterThan(quantity('50M'))", "quantity('50M').isLessThan(quantity('50Mi'))",
    "!quantity('100M').isLessThan(quantity('100M'))",
    "string(quantity('1Gi')) == '1Gi'",
    # core CEL still works beside the extensions
    "size('abc') == 3", "'abc'.startsWith('a')", "[1, 2].all(x, x > 0)", "[1, 2].exists_one(x, x == 2)",
]


@pytest.mark.parametrize("expr", TRUE_EXPRESSIONS)
def test_library_expression_is_true(expr):
    assert evaluate(expr) is True


ERROR_EXPRESSIONS = [
    "ip('1.2.3')", "ip('::ffff:1.2.3.4')", "ip('fe80::1%eth0')", "ip.isCanonical('nope')",
    "cidr('10.0.0.0')", "cidr('10.0.0.0/33')", "cidr('10.0.0.0/8').containsIP('bad')",
    "cidr('10.0.0.0/8').containsCIDR('10.0.0.1')",
    "url('../relative')", "url('not a url')",
    "'abc'.substring(4)", "'abc'.substring(2, 1)", "'abc'.indexOf('a', 4)", "'abc'.charAt(-1)",
    "[].min()", "[].max()", "'a'.isSorted()", "quantity('1GiB')", "quantity('50m').asInteger()",
    "quantity('1').isLessThan(1)",
]


@pytest.mark.parametrize("expr", ERROR_EXPRESSIONS)
def test_library_expression_errors(expr):
    with pytest.raises(CELEvalError):
        evaluate(expr)


def test_errors_are_absorbed_by_logical_operators_like_cel():
    # CEL's commutative || and &&: an error on one side is absorbed by a decisive other side.
    assert evaluate("ip('bad').family() == 4 || true") is True
    assert evaluate("false && cidr('bad').prefixLength() == 1") is False
    assert evaluate("!isCIDR(self) || cidr(self).prefixLength() <= 28", "nonsense") is True


def test_numbers_follow_the_schema_type():
    # schema "integer" -> CEL int: int literals compare; schema "number" -> double.
    crd = _schema({"n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 1"}]},
                   "d": {"type": "number", "x-kubernetes-validations": [{"rule": "self > 1.0"}]}})
    assert validate(crd, {"n": 2, "d": 2}) == []
    assert [e.path for e in validate(crd, {"n": 1, "d": 1})] == ["n", "d"]
    # a JSON float with an integral value in an integer field is an int (YAML 2.0)
    assert validate(crd, {"n": 2.0}) == []
    # JSON 2 in a "number" field is a double (2 + 0.5 works); untyped, it is an int and
    # int + double has no overload in CEL: the schema-driven mapping matters
    sch = _schema({"d": {"type": "number", "x-kubernetes-validations": [{"rule": "self + 0.5 > 2.0"}]}})
    assert validate(sch, {"d": 2}) == []
    with pytest.raises(CELEvalError):
        evaluate("self + 0.5 > 2.0", 2)


def test_string_formats_map_to_cel_types():
    sch = _schema({
        "t": {"type": "string", "format": "date-time",
              "x-kubernetes-validations": [{"rule": "self > timestamp('2020-01-01T00:00:00Z')"}]},
        "d": {"type": "string", "format": "duration",
              "x-kubernetes-validations": [{"rule": "self >= duration('1h')"}]},
    })
    assert validate(sch, {"t": "2024-05-01T10:00:00Z", "d": "1h30m"}) == []
    bad = validate(sch, {"t": "2019-05-01T10:00:00Z", "d": "59m"})
    assert [e.path for e in bad] == ["t", "d"]


def test_property_names_are_escaped_like_kubernetes():
    sch = _schema({"namespace": {"type": "string"}, "x-y": {"type": "string"}, "a.b": {"type": "string"}},
                  rules=[{"rule": "self.__namespace__ == 'ns' && self.x__dash__y == 'v' && self.a__dot__b == 'w'"}])
    assert validate(sch, {"namespace": "ns", "x-y": "v", "a.b": "w"}) == []
    assert len(validate(sch, {"namespace": "other", "x-y": "v", "a.b": "w"})) == 1


# ----------------------------------------------------------------------------- the schema walk


def _schema(props, rules=None, required=None):
    s = {"type": "object", "properties": props}
    if rules:
        s["x-kubernetes-validations"] = rules
    if required:
        s["required"] = required
    return s


def small_crd():
    """A small CRD shaped like ours: a network with a CIDR and an allocation pool, a list of
    named ports, a map of labels, an immutable field and a oneOf-style rule."""
    network = {
        "type": "object",
        "properties": {
            "cidr": {"type": "string", "default": "172.31.0.0/24",
                     "x-kubernetes-validations": [
                         {"rule": "isCIDR(self)", "message": "must be a CIDR"},
                         {"rule": "!isCIDR(self) || cidr(self) == cidr(self).masked()",
                          "messageExpression": "'must be a network address, like ' + string(cidr(self).masked())"}]},
            "poolStart": {"type": "string"},
            "poolEnd": {"type": "string"},
            "existingNetworkID": {"type": "string",
                                  "x-kubernetes-validations": [
                                      {"rule": "self == oldSelf", "message": "existingNetworkID is immutable"}]},
            "name": {"type": "string"},
        },
        "x-kubernetes-validations": [
            {"rule": "!has(self.poolStart) || cidr(self.cidr).containsIP(self.poolStart)",
             "message": "allocation pool start must be inside the CIDR", "fieldPath": ".poolStart"},
            {"rule": "has(self.poolStart) == has(self.poolEnd)", "message": "give both ends of the pool",
             "reason": "FieldValueRequired"},
            {"rule": "!(has(self.poolStart) && has(self.poolEnd)) || "
                     "ip(self.poolStart).family() == ip(self.poolEnd).family()",
             "message": "pool ends differ in family"},
            {"rule": "!(has(self.name) && has(self.existingNetworkID))",
             "message": "name and existingNetworkID are exclusive"},
        ],
    }
    ports = {
        "type": "array", "maxItems": 16,
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "x-kubernetes-validations": [{"rule": "self.all(p, p.port != 22) || self.size() == 1",
                                      "message": "port 22 only alone"}],
        "items": {
            "type": "object", "required": ["name", "port"],
            "properties": {"name": {"type": "string"},
                           "port": {"type": "integer", "format": "int32"},
                           "protocol": {"type": "string", "default": "TCP"}},
            "x-kubernetes-validations": [
                {"rule": "self.port >= 1 && self.port <= 65535",
                 "messageExpression": "'port ' + string(self.port) + ' out of range'"},
                {"rule": "self.protocol in ['TCP', 'UDP']", "message": "bad protocol"},
                {"rule": "self.port == oldSelf.port", "message": "port of a named entry is immutable"},
            ],
        },
    }
    labels = {"type": "object", "additionalProperties": {
        "type": "string", "x-kubernetes-validations": [{"rule": "size(self) <= 8", "message": "label too long"}]}}
    spec = _schema({"network": network, "ports": ports, "labels": labels,
                    "replicas": {"type": "integer", "default": 1},
                    "maxReplicas": {"type": "integer"}},
                   rules=[{"rule": "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                           "message": "replicas above maxReplicas"}])
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced",
                 "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                                  "metadata": {"type": "object"},
                                                  "spec": spec},
                                   "x-kubernetes-validations": [
                                       {"rule": "self.metadata.name.size() <= 20", "message": "name too long"}],
                               }}}]},
    }


def thing(**spec):
    return {"apiVersion": "example.dev/v1alpha1", "kind": "Thing", "metadata": {"name": "t1"}, "spec": spec}


def _messages(errors):
    return sorted((e.full_path, e.message) for e in errors)


def test_valid_object_passes_and_defaults_are_applied_first():
    obj = thing(network={"poolStart": "172.31.0.10", "poolEnd": "172.31.0.20"},
                ports=[{"name": "api", "port": 9876}], labels={"a": "b"})
    # poolStart is checked against the DEFAULT cidr: without defaulting self.cidr would be absent
    assert validate(small_crd(), obj) == []
    assert validate(small_crd(), thing()) == []
    errs = validate(small_crd(), obj, defaults=False)
    # without defaults: no such member 'cidr', no such member 'protocol'
    assert [(e.full_path, e.error is not None) for e in errs] == [
        ("spec.network.poolStart", True), ("spec.ports[0]", True)]


def test_nested_object_rules_and_field_path():
    errs = validate(small_crd(), thing(network={"cidr": "10.0.0.0/24", "poolStart": "10.0.1.5",
                                                 "poolEnd": "10.0.1.9"}))
    assert len(errs) == 1
    e = errs[0]
    assert e.path == "spec.network"
    assert e.field_path == ".poolStart" and e.full_path == "spec.network.poolStart"
    assert e.message == "allocation pool start must be inside the CIDR"
    assert e.rule.startswith("!has(self.poolStart)")
    assert e.error is None


def test_reason_and_several_failures():
    errs = validate(small_crd(), thing(network={"poolStart": "172.31.0.5", "name": "n",
                                                 "existingNetworkID": "abc"}))
    assert _messages(errs) == [("spec.network", "give both ends of the pool"),
                               ("spec.network", "name and existingNetworkID are exclusive")]
    assert [e.reason for e in errs if "both" in e.message] == ["FieldValueRequired"]


def test_leaf_rules_and_message_expression():
    errs = validate(small_crd(), thing(network={"cidr": "10.0.0.1/24"}))
    assert _messages(errs) == [("spec.network.cidr", "must be a network address, like 10.0.0.0/24")]
    errs = validate(small_crd(), thing(network={"cidr": "banana"}))
    # the network-level rule has no poolStart, so only the cidr rule fails for "banana"
    assert _messages(errs) == [("spec.network.cidr", "must be a CIDR")]


def test_message_expression_failure_falls_back_to_message_or_default():
    sch = _schema({"a": {"type": "integer", "x-kubernetes-validations": [
        {"rule": "self < 3", "messageExpression": "self.nope"},
        {"rule": "self < 2", "message": "fallback", "messageExpression": "1 / 0"}]}})
    assert _messages(validate(sch, {"a": 5})) == [("a", "failed rule: self < 3"), ("a", "fallback")]


def test_list_of_objects_each_item_checked_with_index_paths():
    errs = validate(small_crd(), thing(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 70000},
                                              {"name": "c", "port": 81, "protocol": "SCTP"}]))
    assert _messages(errs) == [("spec.ports[1]", "port 70000 out of range"),
                               ("spec.ports[2]", "bad protocol")]
    errs = validate(small_crd(), thing(ports=[{"name": "a", "port": 22}, {"name": "b", "port": 80}]))
    assert _messages(errs) == [("spec.ports", "port 22 only alone")]


def test_additional_properties_values_are_checked():
    errs = validate(small_crd(), thing(labels={"ok": "short", "bad": "much too long"}))
    assert _messages(errs) == [("spec.labels[bad]", "label too long")]


def test_absent_optional_fields_are_skipped_and_has_is_false():
    # network absent entirely: its rules do not run (no error about poolStart or the CIDR)
    assert validate(small_crd(), thing(replicas=2)) == []
    # has() on a present field / absent field
    assert _messages(validate(small_crd(), thing(replicas=3, maxReplicas=2))) == \
        [("spec", "replicas above maxReplicas")]
    assert validate(small_crd(), thing(replicas=3)) == []


def test_null_values_are_skipped():
    obj = thing(network=None)
    assert validate(small_crd(), obj, defaults=False) == []


def test_root_rule_sees_metadata():
    obj = thing()
    obj["metadata"]["name"] = "x" * 21
    assert _messages(validate(small_crd(), obj)) == [("", "name too long")]
    assert str(validate(small_crd(), obj)[0]) == "<root>: name too long"


def test_transition_rules_skipped_on_create_and_enforced_on_update():
    new = thing(network={"existingNetworkID": "net-2"}, ports=[{"name": "a", "port": 81}])
    assert validate(small_crd(), new) == []  # create: oldSelf rules skipped
    old = thing(network={"existingNetworkID": "net-1"}, ports=[{"name": "a", "port": 80}])
    assert _messages(validate(small_crd(), new, old)) == [
        ("spec.network.existingNetworkID", "existingNetworkID is immutable"),
        ("spec.ports[0]", "port of a named entry is immutable")]
    # unchanged: fine
    assert validate(small_crd(), old, copy.deepcopy(old)) == []
    # list items are correlated by the map key, not by position
    reordered_old = thing(ports=[{"name": "b", "port": 1}, {"name": "a", "port": 81}])
    assert validate(small_crd(), thing(ports=[{"name": "a", "port": 81}]), reordered_old) == []
    # a field that did not exist before is not a transition
    assert validate(small_crd(), new, thing()) == []


def test_validation_ratcheting_on_update():
    # an invalid value that is unchanged on update is tolerated (Kubernetes >= 1.30) ...
    bad = thing(network={"cidr": "10.0.0.1/24"})
    assert len(validate(small_crd(), bad)) == 1
    assert validate(small_crd(), bad, copy.deepcopy(bad)) == []
    assert len(validate(small_crd(), bad, copy.deepcopy(bad), ratcheting=False)) == 1
    # ... but not once it changes, and other fields' changes do not hide it
    changed = thing(network={"cidr": "10.0.0.2/24"})
    assert len(validate(small_crd(), changed, bad)) == 1
    both = thing(network={"cidr": "10.0.0.1/24"}, replicas=3)
    assert validate(small_crd(), both, bad) == []


def test_optional_old_self():
    sch = _schema({"v": {"type": "string", "x-kubernetes-validations": [
        {"rule": "!oldSelf.hasValue() || oldSelf.value() == self", "optionalOldSelf": True,
         "message": "immutable once set"},
        {"rule": "oldSelf.orValue('') != 'frozen'", "optionalOldSelf": True, "message": "frozen"}]}})
    assert validate(sch, {"v": "x"}) == []
    assert _messages(validate(sch, {"v": "y"}, {"v": "x"})) == [("v", "immutable once set")]
    assert _messages(validate(sch, {"v": "y"}, {"v": "frozen"})) == [("v", "frozen"), ("v", "immutable once set")]


def test_evaluation_error_is_reported_not_swallowed():
    sch = _schema({"a": {"type": "string", "x-kubernetes-validations": [
        {"rule": "cidr(self).prefixLength() < 30", "message": "prefix too long"}]}})
    errs = validate(sch, {"a": "not-a-cidr"})
    assert len(errs) == 1 and errs[0].error and "parse error" in errs[0].error
    assert errs[0].message == "prefix too long"
    sch2 = _schema({"a": {"type": "string", "x-kubernetes-validations": [{"rule": "self"}]}})
    (e,) = validate(sch2, {"a": "x"})
    assert "did not evaluate to a bool" in e.error


def test_schema_can_be_given_directly_or_per_version():
    crd = small_crd()
    sch = celk8s.crd_schema(crd)
    assert sch is crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    bad = thing(replicas=5, maxReplicas=1)
    assert validate(sch, bad) == validate(crd, bad) == validate(crd, bad, version="v1alpha1")
    assert len(validate(sch, bad)) == 1
    with pytest.raises(KeyError):
        validate(crd, bad, version="v9")


def test_rule_error_is_a_value():
    e = RuleError(path="spec", rule="r", message="m", field_path="x")
    assert e.full_path == "spec.x"
    assert RuleError(path="spec", rule="r", message="m", field_path="[0]").full_path == "spec[0]"


# ----------------------------------------------------------------------------- compile_all


def test_compile_all_accepts_the_small_crd():
    assert compile_all(small_crd()) == []


def test_compile_all_reports_each_problem():
    sch = _schema({"a": {"type": "string", "x-kubernetes-validations": [
        {"rule": "self.startsWith("},                         # syntax
        {"rule": "isIPv9(self)"},                             # unknown function
        {"rule": "self.frobnicate()"},                        # unknown method
        {"rule": "self == other"},                            # undeclared variable
        {"rule": "self.?x.orValue('') == ''"},               # optional syntax unsupported
        {"rule": "self != ''", "messageExpression": "'x' +"},  # bad message expression
        {"rule": "self != ''", "reason": "Nope"},
        {"rule": "self != ''", "optionalOldSelf": True},
        {"rule": "self.all(x, x != '') && [1].map(y, y + 1) == [2]"},  # macros bind x, y: fine
    ]}})
    problems = compile_all(sch)
    text = "\n".join(problems)
    assert len(problems) == 8, text
    assert "syntax error" in problems[0]
    assert "unknown function isIPv9()" in text
    assert "unknown method .frobnicate()" in text
    assert "undeclared variable other" in text
    assert "optional syntax" in text
    assert "messageExpression" in text
    assert "invalid reason 'Nope'" in text
    assert "optionalOldSelf set on a rule without oldSelf" in text
