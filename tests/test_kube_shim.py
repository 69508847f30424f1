"""
Tests of the test Kubernetes API itself (tests/kube/shim.py) and of its pytest plugin.

Each group covers one promised feature (see docs/testing-kube.md); the last tests run
a toy kopf operator end-to-end against the emulator.
"""
import json
import re
import textwrap
import threading

import pytest
import requests

pytestmark = pytest.mark.kube
pytest_plugins = ['kube.plugin']  # also listed in tests/conftest.py; a second mention is a no-op

kubernetes = pytest.importorskip('kubernetes')
from kubernetes.client import ApiException  # noqa: E402

from kube.plugin import wait_for  # noqa: E402

RFC3339 = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ')

WIDGET_CRD = {
    'apiVersion': 'apiextensions.k8s.io/v1',
    'kind': 'CustomResourceDefinition',
    'metadata': {'name': 'widgets.example.com'},
    'spec': {
        'group': 'example.com',
        'scope': 'Namespaced',
        'names': {'plural': 'widgets', 'singular': 'widget', 'kind': 'Widget', 'shortNames': ['wd']},
        'versions': [{
            'name': 'v1', 'served': True, 'storage': True,
            'subresources': {'status': {}},
            'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
        }],
    },
}

GADGET_CRD = {  # no status subresource, cluster-scoped
    'apiVersion': 'apiextensions.k8s.io/v1',
    'kind': 'CustomResourceDefinition',
    'metadata': {'name': 'gadgets.example.com'},
    'spec': {
        'group': 'example.com',
        'scope': 'Cluster',
        'names': {'plural': 'gadgets', 'singular': 'gadget', 'kind': 'Gadget'},
        'versions': [{
            'name': 'v1', 'served': True, 'storage': True,
            'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
        }],
    },
}

CM = '/api/v1/namespaces/default/configmaps'
WIDGETS = '/apis/example.com/v1/namespaces/default/widgets'
MERGE = {'Content-Type': 'application/merge-patch+json'}
JSONPATCH = {'Content-Type': 'application/json-patch+json'}
STRATEGIC = {'Content-Type': 'application/strategic-merge-patch+json'}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

class Http:
    """Raw HTTP to the emulator, to see status codes and exact payloads."""

    def __init__(self, url):
        self.url = url
        self.session = requests.Session()

    def __call__(self, method, path, body=None, headers=None, params=None, expect=None):
        data = json.dumps(body) if body is not None else None
        headers = dict({'Content-Type': 'application/json'} if data is not None else {}, **(headers or {}))
        rsp = self.session.request(method, self.url + path, data=data, headers=headers, params=params, timeout=10)
        if expect is not None:
            assert rsp.status_code == expect, (rsp.status_code, rsp.text)
        return rsp

    def get(self, path, **kw):
        return self('GET', path, **kw)

    def post(self, path, body, **kw):
        return self('POST', path, body, **kw)

    def put(self, path, body, **kw):
        return self('PUT', path, body, **kw)

    def patch(self, path, body, headers=MERGE, **kw):
        return self('PATCH', path, body, headers=headers, **kw)

    def delete(self, path, body=None, **kw):
        return self('DELETE', path, body, **kw)

    def watch(self, path, params=None, count=None, timeout=1.0):
        """Collect watch events until `count` are received or the server-side timeout ends the stream."""
        params = dict({'watch': 'true', 'timeoutSeconds': str(timeout)}, **(params or {}))
        events = []
        with self.session.get(self.url + path, params=params, stream=True, timeout=10) as rsp:
            assert rsp.status_code == 200, rsp.text
            for line in rsp.iter_lines():
                if line:
                    events.append(json.loads(line))
                    if count is not None and len(events) >= count:
                        break
        return events


def cm_body(name, labels=None, data=None, **meta):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap',
            'metadata': dict({'name': name, 'labels': labels or {}}, **meta), 'data': data or {'k': 'v'}}


def widget(name, spec=None, **meta):
    return {'apiVersion': 'example.com/v1', 'kind': 'Widget',
            'metadata': dict({'name': name}, **meta), 'spec': spec or {'size': 1}}


def summary(events):
    return [(e['type'], e['object']['metadata'].get('name')) for e in events if e['type'] != 'BOOKMARK']


@pytest.fixture()
def http(kube_api):
    return Http(kube_api.url)


@pytest.fixture()
def client(kube_api):
    with kube_api.api_client() as api_client:
        yield api_client


@pytest.fixture()
def core(client):
    return kubernetes.client.CoreV1Api(client)


@pytest.fixture()
def apps(client):
    return kubernetes.client.AppsV1Api(client)


@pytest.fixture()
def custom(client):
    return kubernetes.client.CustomObjectsApi(client)


@pytest.fixture()
def widgets(kube_api):
    kube_api.create_crd(WIDGET_CRD)
    return WIDGETS


def deployment_body(name, replicas=1):
    return {
        'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
        'spec': {'replicas': replicas, 'selector': {'matchLabels': {'app': name}},
                 'template': {'metadata': {'labels': {'app': name}},
                              'spec': {'containers': [{'name': 'c', 'image': 'busybox'}]}}},
    }


# --------------------------------------------------------------------------------------------------
# 1. Metadata, resource versions, list & watch basics, 422 on failed tests, 201, discovery
# --------------------------------------------------------------------------------------------------

def test_create_answers_201_and_sets_server_metadata(http):
    rsp = http.post(CM, cm_body('a', uid='fake', resourceVersion='1', generation=7), expect=201)
    meta = rsp.json()['metadata']
    assert re.fullmatch(r'[0-9a-f-]{36}', meta['uid']) and meta['uid'] != 'fake'
    assert meta['resourceVersion'].isdigit() and meta['resourceVersion'] != '1'
    assert meta['generation'] == 1
    assert RFC3339.fullmatch(meta['creationTimestamp'])
    assert meta['namespace'] == 'default'
    assert rsp.json()['apiVersion'] == 'v1' and rsp.json()['kind'] == 'ConfigMap'


def test_resource_version_is_global_and_increasing(http):
    rv1 = int(http.post(CM, cm_body('a'), expect=201).json()['metadata']['resourceVersion'])
    rv2 = int(http.post('/api/v1/namespaces/default/secrets',
                        {'metadata': {'name': 's'}, 'stringData': {'x': 'y'}}, expect=201).json()['metadata']['resourceVersion'])
    rv3 = int(http.post(CM, cm_body('b'), expect=201).json()['metadata']['resourceVersion'])
    assert rv1 < rv2 < rv3


def test_every_change_bumps_the_resource_version_but_noops_do_not(http):
    rv0 = http.post(CM, cm_body('a'), expect=201).json()['metadata']['resourceVersion']
    rv1 = http.patch(f'{CM}/a', {'data': {'k': 'v2'}}, expect=200).json()['metadata']['resourceVersion']
    rv2 = http.patch(f'{CM}/a', {'metadata': {'labels': {'x': 'y'}}}, expect=200).json()['metadata']['resourceVersion']
    rv3 = http.patch(f'{CM}/a', {'metadata': {'labels': {'x': 'y'}}}, expect=200).json()['metadata']['resourceVersion']
    assert int(rv0) < int(rv1) < int(rv2)
    assert rv3 == rv2  # nothing changed, nothing bumped
    assert http.get(f'{CM}/a', expect=200).json()['metadata']['resourceVersion'] == rv2


def test_list_returns_the_collection_resource_version(http):
    http.post(CM, cm_body('a'), expect=201)
    last = http.post(CM, cm_body('b'), expect=201).json()['metadata']['resourceVersion']
    listing = http.get(CM, expect=200).json()
    assert listing['kind'] == 'ConfigMapList' and listing['apiVersion'] == 'v1'
    assert listing['metadata']['resourceVersion'] == last
    assert [item['metadata']['name'] for item in listing['items']] == ['a', 'b']
    assert all(item['kind'] == 'ConfigMap' for item in listing['items'])


def test_list_pagination_with_limit_and_continue(http):
    for name in 'abcde':
        http.post(CM, cm_body(name), expect=201)
    page1 = http.get(CM, params={'limit': '2'}, expect=200).json()
    assert [i['metadata']['name'] for i in page1['items']] == ['a', 'b']
    assert page1['metadata']['remainingItemCount'] == 3
    page2 = http.get(CM, params={'limit': '2', 'continue': page1['metadata']['continue']}, expect=200).json()
    page3 = http.get(CM, params={'limit': '2', 'continue': page2['metadata']['continue']}, expect=200).json()
    assert [i['metadata']['name'] for i in page2['items'] + page3['items']] == ['c', 'd', 'e']
    assert 'continue' not in page3['metadata']


def test_watch_without_version_sends_the_current_state_then_changes(http):
    http.post(CM, cm_body('a'), expect=201)
    threading.Timer(0.3, lambda: http.post(CM, cm_body('b'), expect=201)).start()
    events = http.watch(CM, count=2)
    assert summary(events) == [('ADDED', 'a'), ('ADDED', 'b')]


def test_watch_from_a_resource_version_skips_older_objects_and_changes(http):
    http.post(CM, cm_body('a'), expect=201)
    list_rv = http.get(CM, expect=200).json()['metadata']['resourceVersion']
    http.post(CM, cm_body('b'), expect=201)
    http.patch(f'{CM}/b', {'data': {'k': 'v2'}}, expect=200)
    http.delete(f'{CM}/a', expect=200)
    events = http.watch(CM, params={'resourceVersion': list_rv}, count=3)
    assert summary(events) == [('ADDED', 'b'), ('MODIFIED', 'b'), ('DELETED', 'a')]
    rvs = [int(e['object']['metadata']['resourceVersion']) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(list_rv)


def test_watch_subscribes_before_taking_the_snapshot(http, kube_api):
    # Objects created while the watch is being opened are seen exactly once: in the snapshot or live.
    names = [f'cm-{i}' for i in range(30)]
    creator = threading.Thread(target=lambda: [http.post(CM, cm_body(n), expect=201) for n in names])
    creator.start()
    events = http.watch(CM, count=len(names), timeout=5)
    creator.join()
    assert sorted(name for _, name in summary(events)) == sorted(names)


def test_watch_with_an_expired_resource_version_gets_410(http, kube_api):
    kube_api.call(setattr, kube_api.emulator, 'history_limit', 2)
    rv = http.post(CM, cm_body('a'), expect=201).json()['metadata']['resourceVersion']
    for name in 'bcd':
        http.post(CM, cm_body(name), expect=201)
    events = http.watch(CM, params={'resourceVersion': rv}, count=1)
    assert events[0]['type'] == 'ERROR' and events[0]['object']['code'] == 410


def test_watch_bookmarks_and_initial_events_end(http):
    http.post(CM, cm_body('a'), expect=201)
    events = http.watch(CM, params={'sendInitialEvents': 'true', 'resourceVersionMatch': 'NotOlderThan',
                                    'allowWatchBookmarks': 'true'}, count=2)
    assert events[0]['type'] == 'ADDED'
    assert events[1]['type'] == 'BOOKMARK'
    assert events[1]['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}


def test_failed_json_patch_test_is_422_and_changes_nothing(http):
    rv = http.post(CM, cm_body('a'), expect=201).json()['metadata']['resourceVersion']
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': '999999'},
           {'op': 'replace', 'path': '/data/k', 'value': 'changed'}]
    rsp = http.patch(f'{CM}/a', ops, headers=JSONPATCH, expect=422)
    assert rsp.json()['kind'] == 'Status' and rsp.json()['code'] == 422 and rsp.json()['reason'] == 'Invalid'
    after = http.get(f'{CM}/a', expect=200).json()
    assert after['data'] == {'k': 'v'} and after['metadata']['resourceVersion'] == rv
    ops[0]['value'] = rv
    assert http.patch(f'{CM}/a', ops, headers=JSONPATCH, expect=200).json()['data'] == {'k': 'changed'}


def test_bundled_builtin_resources_are_discoverable(http):
    assert http.get('/api', expect=200).json()['versions'] == ['v1']
    core = {r['name']: r for r in http.get('/api/v1', expect=200).json()['resources']}
    assert core['configmaps']['namespaced'] is True and core['configmaps']['kind'] == 'ConfigMap'
    assert core['namespaces']['namespaced'] is False and 'namespaces/status' in core
    groups = {g['name']: g for g in http.get('/apis', expect=200).json()['groups']}
    assert {'apps', 'batch', 'rbac.authorization.k8s.io', 'apiextensions.k8s.io'} <= set(groups)
    assert groups['autoscaling']['preferredVersion']['version'] == 'v2'
    apps = {r['name'] for r in http.get('/apis/apps/v1', expect=200).json()['resources']}
    assert {'deployments', 'deployments/status', 'deployments/scale', 'statefulsets'} <= apps
    http.get('/apis/example.com/v1', expect=404)
    http.get('/api/v1/namespaces/default/nonexistents', expect=404)
    assert http.get('/version', expect=200).json()['major'] == '1'


def test_crds_created_at_runtime_are_discoverable_with_status_subresource(http, kube_api):
    rsp = http.post('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', WIDGET_CRD, expect=201)
    conditions = {c['type']: c['status'] for c in rsp.json()['status']['conditions']}
    assert conditions == {'NamesAccepted': 'True', 'Established': 'True'}
    groups = {g['name']: g for g in http.get('/apis', expect=200).json()['groups']}
    assert groups['example.com']['preferredVersion']['groupVersion'] == 'example.com/v1'
    resources = {r['name']: r for r in http.get('/apis/example.com/v1', expect=200).json()['resources']}
    assert resources['widgets']['kind'] == 'Widget' and resources['widgets']['namespaced'] is True
    assert resources['widgets']['singularName'] == 'widget' and resources['widgets']['shortNames'] == ['wd']
    assert 'widgets/status' in resources
    assert set(resources['widgets']['verbs']) >= {'get', 'list', 'watch', 'create', 'patch', 'update', 'delete'}
    http.post(WIDGETS, widget('w1'), expect=201)
    assert 'widgets.example.com' in kube_api.status_subresource_kinds()

    # Deleting the CRD removes the resource and all its objects.
    http.delete('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com', expect=200)
    http.get('/apis/example.com/v1', expect=404)
    http.get(WIDGETS, expect=404)


def test_invalid_crds_and_names_are_rejected_with_422(http):
    bad = json.loads(json.dumps(WIDGET_CRD))
    bad['metadata']['name'] = 'wrong.example.com'
    http.post('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', bad, expect=422)
    http.post(CM, cm_body('Upper_Case'), expect=422)
    http.post(CM, cm_body('ok', labels={'bad key!': 'x'}), expect=422)
    http.post(CM, {'metadata': {}}, expect=422)
    http.post(CM, cm_body('a'), expect=201)
    assert http.post(CM, cm_body('a'), expect=409).json()['reason'] == 'AlreadyExists'
    generated = http.post(CM, {'metadata': {'generateName': 'gen-'}}, expect=201).json()['metadata']['name']
    assert re.fullmatch(r'gen-[a-z0-9]{5}', generated)


# --------------------------------------------------------------------------------------------------
# 2. Generation
# --------------------------------------------------------------------------------------------------

def test_generation_bumps_only_on_non_metadata_non_status_changes(http, widgets):
    assert http.post(widgets, widget('w'), expect=201).json()['metadata']['generation'] == 1
    assert http.patch(f'{widgets}/w', {'spec': {'size': 2}}).json()['metadata']['generation'] == 2
    assert http.patch(f'{widgets}/w', {'metadata': {'labels': {'a': 'b'}, 'annotations': {'x': 'y'}}}).json()['metadata']['generation'] == 2
    assert http.patch(f'{widgets}/w', {'metadata': {'finalizers': ['x/y']}}).json()['metadata']['generation'] == 2
    assert http.patch(f'{widgets}/w/status', {'status': {'phase': 'Ready'}}).json()['metadata']['generation'] == 2
    assert http.patch(f'{widgets}/w', {'extra': {'top-level': True}}).json()['metadata']['generation'] == 3
    # Kinds without spec: any content change (data) bumps it too.
    http.post(CM, cm_body('c'), expect=201)
    assert http.patch(f'{CM}/c', {'data': {'k': 'v2'}}).json()['metadata']['generation'] == 2


# --------------------------------------------------------------------------------------------------
# 3. Status subresource
# --------------------------------------------------------------------------------------------------

def test_status_subresource_writes_change_only_the_status(http, widgets):
    http.post(widgets, widget('w', spec={'size': 1}), expect=201)
    rsp = http.patch(f'{widgets}/w/status', {'status': {'phase': 'Ready'}, 'spec': {'size': 99},
                                             'metadata': {'labels': {'sneaky': 'yes'}}}, expect=200).json()
    assert rsp['status'] == {'phase': 'Ready'}
    assert rsp['spec'] == {'size': 1} and 'sneaky' not in (rsp['metadata'].get('labels') or {})
    # PUT to /status with the current resourceVersion replaces the status only.
    body = dict(rsp, status={'phase': 'Done'}, spec={'size': 42})
    rsp = http.put(f'{widgets}/w/status', body, expect=200).json()
    assert rsp['status'] == {'phase': 'Done'} and rsp['spec'] == {'size': 1}
    assert http.get(f'{widgets}/w/status', expect=200).json()['status'] == {'phase': 'Done'}


def test_main_resource_writes_ignore_status_where_a_status_subresource_exists(http, widgets, kube_api):
    created = http.post(widgets, dict(widget('w'), status={'phase': 'Forged'}), expect=201).json()
    assert 'status' not in created  # dropped on create, too
    http.patch(f'{widgets}/w/status', {'status': {'phase': 'Real'}}, expect=200)
    rsp = http.patch(f'{widgets}/w', {'spec': {'size': 2}, 'status': {'phase': 'Forged'}}, expect=200).json()
    assert rsp['status'] == {'phase': 'Real'} and rsp['spec'] == {'size': 2}
    ops = [{'op': 'replace', 'path': '/status/phase', 'value': 'Forged'}]
    assert http.patch(f'{widgets}/w', ops, headers=JSONPATCH, expect=200).json()['status'] == {'phase': 'Real'}

    # Built-ins with a status subresource behave the same (Deployments, Jobs, ...).
    assert {'deployments.apps', 'jobs.batch', 'statefulsets.apps', 'pods', 'services', 'nodes', 'namespaces'} \
        <= set(kube_api.status_subresource_kinds())
    dep = '/apis/apps/v1/namespaces/default/deployments'
    http.post(dep, dict(deployment_body('d'), status={'readyReplicas': 5}), expect=201)
    http.patch(f'{dep}/d/status', {'status': {'readyReplicas': 1}}, expect=200)
    rsp = http.patch(f'{dep}/d', {'spec': {'replicas': 3}, 'status': {'readyReplicas': 7}}, expect=200).json()
    assert rsp['status'] == {'readyReplicas': 1} and rsp['spec']['replicas'] == 3


def test_kinds_without_status_subresource_keep_status_in_the_main_resource(http, kube_api):
    kube_api.create_crd(GADGET_CRD)
    gadgets = '/apis/example.com/v1/gadgets'
    http.post(gadgets, {'metadata': {'name': 'g'}, 'spec': {}, 'status': {'x': 1}}, expect=201)
    assert http.patch(f'{gadgets}/g', {'status': {'x': 2}}, expect=200).json()['status'] == {'x': 2}
    http.patch(f'{gadgets}/g/status', {'status': {'x': 3}}, expect=404)
    assert 'gadgets.example.com' not in kube_api.status_subresource_kinds()


# --------------------------------------------------------------------------------------------------
# 4. Patch content types; PUT with optimistic concurrency
# --------------------------------------------------------------------------------------------------

def test_merge_patch_merges_dicts_replaces_lists_and_deletes_nulls(http, widgets):
    http.post(widgets, widget('w', spec={'a': 1, 'b': {'c': 2, 'd': 3}, 'l': [1, 2]}), expect=201)
    rsp = http.patch(f'{widgets}/w', {'spec': {'a': None, 'b': {'c': 20, 'd': None}, 'l': [3]}}, expect=200).json()
    assert rsp['spec'] == {'b': {'c': 20}, 'l': [3]}


def test_json_patch_applies_operations(http, widgets):
    http.post(widgets, widget('w', spec={'items': ['a']}, finalizers=['x/y']), expect=201)
    ops = [{'op': 'add', 'path': '/spec/items/-', 'value': 'b'},
           {'op': 'add', 'path': '/metadata/labels', 'value': {'k': 'v'}},
           {'op': 'remove', 'path': '/metadata/finalizers'}]
    rsp = http.patch(f'{widgets}/w', ops, headers=JSONPATCH, expect=200).json()
    assert rsp['spec']['items'] == ['a', 'b'] and rsp['metadata']['labels'] == {'k': 'v'}
    assert 'finalizers' not in rsp['metadata']
    http.patch(f'{widgets}/w', [{'op': 'remove', 'path': '/spec/missing'}], headers=JSONPATCH, expect=422)
    http.patch(f'{widgets}/w', {'not': 'a list'}, headers=JSONPATCH, expect=400)


def test_strategic_merge_is_a_merge_patch_for_builtins_and_415_for_custom_resources(http, widgets):
    dep = '/apis/apps/v1/namespaces/default/deployments'
    http.post(dep, deployment_body('d'), expect=201)
    patch = {'spec': {'template': {'spec': {'containers': [{'name': 'side', 'image': 'x'}]}}}}
    rsp = http.patch(f'{dep}/d', patch, headers=STRATEGIC, expect=200).json()
    # Documented approximation: lists are replaced (a real server would merge containers by name).
    assert [c['name'] for c in rsp['spec']['template']['spec']['containers']] == ['side']
    http.post(widgets, widget('w'), expect=201)
    http.patch(f'{widgets}/w', {'spec': {'a': 1}}, headers=STRATEGIC, expect=415)
    http.patch(f'{widgets}/w', {'spec': {'a': 1}}, headers={'Content-Type': 'application/apply-patch+yaml'}, expect=415)


def test_put_replaces_with_optimistic_concurrency(http, widgets):
    created = http.post(widgets, widget('w', spec={'a': 1}), expect=201).json()
    replaced = http.put(f'{widgets}/w', dict(created, spec={'b': 2}), expect=200).json()
    assert replaced['spec'] == {'b': 2} and replaced['metadata']['generation'] == 2
    assert int(replaced['metadata']['resourceVersion']) > int(created['metadata']['resourceVersion'])
    stale = http.put(f'{widgets}/w', dict(created, spec={'c': 3}), expect=409).json()
    assert stale['reason'] == 'Conflict'
    no_rv = dict(replaced, metadata={'name': 'w'})
    http.put(f'{widgets}/w', no_rv, expect=422)  # custom resources require a resourceVersion
    http.put(f'{WIDGETS}/absent', widget('absent'), expect=404)
    # Built-ins allow unconditional updates; a resourceVersion in a patch is a precondition too.
    http.post(CM, cm_body('c'), expect=201)
    assert http.put(f'{CM}/c', cm_body('c', data={'new': 'data'}), expect=200).json()['data'] == {'new': 'data'}
    http.patch(f'{CM}/c', {'metadata': {'resourceVersion': '1'}, 'data': {'x': 'y'}}, expect=409)


# --------------------------------------------------------------------------------------------------
# 5. Selectors
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('selector, expected', [
    ('app=web', ['a', 'b']),
    ('app==web', ['a', 'b']),
    ('app!=web', ['c', 'd']),
    ('app in (web,db)', ['a', 'b', 'c']),
    ('app notin (web)', ['c', 'd']),
    ('tier', ['a', 'c']),
    ('!tier', ['b', 'd']),
    ('app=web,tier=front', ['a']),
    ('app in (web, db),!tier', ['b']),
])
def test_label_selectors_in_lists(http, selector, expected):
    http.post(CM, cm_body('a', labels={'app': 'web', 'tier': 'front'}), expect=201)
    http.post(CM, cm_body('b', labels={'app': 'web'}), expect=201)
    http.post(CM, cm_body('c', labels={'app': 'db', 'tier': 'back'}), expect=201)
    http.post(CM, cm_body('d'), expect=201)
    items = http.get(CM, params={'labelSelector': selector}, expect=200).json()['items']
    assert [i['metadata']['name'] for i in items] == expected


def test_field_selectors_on_name_and_namespace(http, kube_api):
    kube_api.create_namespace('other')
    http.post(CM, cm_body('a'), expect=201)
    http.post(CM, cm_body('b'), expect=201)
    http.post('/api/v1/namespaces/other/configmaps', cm_body('a'), expect=201)
    names = lambda rsp: [(i['metadata']['namespace'], i['metadata']['name']) for i in rsp.json()['items']]
    assert names(http.get(CM, params={'fieldSelector': 'metadata.name=a'})) == [('default', 'a')]
    assert names(http.get(CM, params={'fieldSelector': 'metadata.name!=a'})) == [('default', 'b')]
    assert names(http.get('/api/v1/configmaps', params={'fieldSelector': 'metadata.name==a'})) == \
        [('default', 'a'), ('other', 'a')]
    assert names(http.get('/api/v1/configmaps', params={'fieldSelector': 'metadata.namespace=other'})) == [('other', 'a')]
    assert names(http.get('/api/v1/configmaps', params={'fieldSelector': 'metadata.namespace!=other,metadata.name=b'})) == \
        [('default', 'b')]
    http.get(CM, params={'labelSelector': 'a in (b'}, expect=400)
    http.get(CM, params={'fieldSelector': 'nonsense'}, expect=400)


def test_watch_with_selectors_turns_entering_and_leaving_into_added_and_deleted(http):
    http.post(CM, cm_body('a', labels={'app': 'web'}), expect=201)
    http.post(CM, cm_body('b'), expect=201)
    rv = http.get(CM).json()['metadata']['resourceVersion']
    http.patch(f'{CM}/b', {'metadata': {'labels': {'app': 'web'}}}, expect=200)  # enters
    http.patch(f'{CM}/a', {'metadata': {'labels': {'app': None}}}, expect=200)  # leaves
    http.patch(f'{CM}/b', {'data': {'x': 'y'}}, expect=200)  # stays
    http.post(CM, cm_body('c'), expect=201)  # never matches
    events = http.watch(CM, params={'resourceVersion': rv, 'labelSelector': 'app=web'}, count=3)
    assert summary(events) == [('ADDED', 'b'), ('DELETED', 'a'), ('MODIFIED', 'b')]
    events = http.watch(CM, params={'fieldSelector': 'metadata.name=b'}, count=1)
    assert summary(events) == [('ADDED', 'b')]


# --------------------------------------------------------------------------------------------------
# 6. Deletion
# --------------------------------------------------------------------------------------------------

def test_delete_with_finalizers_marks_then_removes_when_released(http, widgets):
    rv = http.post(widgets, widget('w', finalizers=['example.com/keep']), expect=201).json()['metadata']['resourceVersion']
    first = http.delete(f'{widgets}/w', expect=200).json()
    stamp = first['metadata']['deletionTimestamp']
    assert RFC3339.fullmatch(stamp) and first['metadata']['deletionGracePeriodSeconds'] == 0
    assert first['metadata']['generation'] == 2  # marking for deletion bumps it, as in Kubernetes
    again = http.delete(f'{widgets}/w', expect=200).json()
    assert again['metadata']['deletionTimestamp'] == stamp  # kept, not renewed: nothing changes
    assert again['metadata']['resourceVersion'] == first['metadata']['resourceVersion']
    assert http.get(f'{widgets}/w', expect=200).json()['metadata']['deletionTimestamp'] == stamp
    http.patch(f'{widgets}/w', {'metadata': {'finalizers': ['example.com/keep', 'new/one']}}, expect=422)
    http.patch(f'{widgets}/w', {'spec': {'size': 5}}, expect=200)  # other changes are allowed
    http.patch(f'{widgets}/w', {'metadata': {'finalizers': None}}, expect=200)
    http.get(f'{widgets}/w', expect=404)
    events = http.watch(widgets, params={'resourceVersion': rv}, count=4)
    assert [t for t, _ in summary(events)] == ['MODIFIED', 'MODIFIED', 'MODIFIED', 'DELETED']
    assert events[0]['object']['metadata']['deletionTimestamp'] == stamp


def test_delete_without_finalizers_removes_at_once_and_returns_the_object(http):
    rv = http.post(CM, cm_body('a'), expect=201).json()['metadata']['resourceVersion']
    rsp = http.delete(f'{CM}/a', expect=200).json()
    assert rsp['metadata']['name'] == 'a' and rsp['kind'] == 'ConfigMap'
    http.get(f'{CM}/a', expect=404)
    assert http.delete(f'{CM}/a', expect=404).json()['reason'] == 'NotFound'
    assert summary(http.watch(CM, params={'resourceVersion': rv}, count=1)) == [('DELETED', 'a')]
    # Preconditions in DeleteOptions are honoured.
    created = http.post(CM, cm_body('b'), expect=201).json()
    http.delete(f'{CM}/b', {'preconditions': {'uid': 'other'}}, expect=409)
    http.delete(f'{CM}/b', {'preconditions': {'uid': created['metadata']['uid']}}, expect=200)


def test_delete_collection_with_a_selector(http):
    http.post(CM, cm_body('a', labels={'x': '1'}), expect=201)
    http.post(CM, cm_body('b', labels={'x': '2'}), expect=201)
    http.delete(CM, params={'labelSelector': 'x=1'}, expect=200)
    assert [i['metadata']['name'] for i in http.get(CM).json()['items']] == ['b']


# --------------------------------------------------------------------------------------------------
# 7. Owner-reference garbage collection
# --------------------------------------------------------------------------------------------------

def owned_by(owner):
    return [{'apiVersion': owner['apiVersion'], 'kind': owner['kind'], 'name': owner['metadata']['name'],
             'uid': owner['metadata']['uid'], 'controller': True, 'blockOwnerDeletion': True}]


def test_dependents_are_garbage_collected_respecting_their_finalizers(http, widgets, kube_api):
    owner = http.post(widgets, widget('w'), expect=201).json()
    http.post(CM, cm_body('plain', ownerReferences=owned_by(owner)), expect=201)
    http.post(CM, cm_body('kept', ownerReferences=owned_by(owner), finalizers=['example.com/hold']), expect=201)
    other = http.post(CM, cm_body('other-owner'), expect=201).json()
    http.post(CM, cm_body('two-owners', ownerReferences=owned_by(owner) + owned_by(other)), expect=201)
    chain = http.post('/api/v1/namespaces/default/secrets', {'metadata': {'name': 'grandchild'}}, expect=201).json()
    http.patch(f'{CM}/plain', {}, expect=200)
    http.patch('/api/v1/namespaces/default/secrets/grandchild',
               {'metadata': {'ownerReferences': owned_by(dict(http.get(f'{CM}/plain').json(), apiVersion='v1'))}},
               expect=200)
    assert chain

    http.delete(f'{widgets}/w', expect=200)
    wait_for(lambda: not kube_api.exists('configmaps', 'plain', 'default'), timeout=3)
    wait_for(lambda: not kube_api.exists('secrets', 'grandchild', 'default'), timeout=3)  # cascades
    kept = kube_api.get('configmaps', 'kept', 'default')
    assert kept['metadata']['deletionTimestamp']  # waits for its own finalizer
    assert kube_api.exists('configmaps', 'two-owners', 'default')  # another owner still exists
    http.patch(f'{CM}/kept', {'metadata': {'finalizers': None}}, expect=200)
    assert not kube_api.exists('configmaps', 'kept', 'default')
    http.delete(f'{CM}/other-owner', expect=200)
    wait_for(lambda: not kube_api.exists('configmaps', 'two-owners', 'default'), timeout=3)


def test_orphan_propagation_keeps_dependents_and_missing_owners_are_collected(http, kube_api):
    owner = http.post(CM, cm_body('owner'), expect=201).json()
    http.post(CM, cm_body('child', ownerReferences=owned_by(owner)), expect=201)
    http.delete(f'{CM}/owner', {'propagationPolicy': 'Orphan'}, expect=200)
    wait_for(lambda: 'ownerReferences' not in kube_api.get('configmaps', 'child', 'default')['metadata'], timeout=3)
    # A dependent whose owners do not exist (by uid) is collected, as the real GC does.
    ghost = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'name': 'ghost', 'uid': '00000000-0000-0000-0000-000000000000'}
    http.post(CM, cm_body('orphan', ownerReferences=[ghost]), expect=201)
    wait_for(lambda: not kube_api.exists('configmaps', 'orphan', 'default'), timeout=3)
    http.post(CM, cm_body('invalid-ref', ownerReferences=[{'name': 'x'}]), expect=422)
    # A namespaced owner only counts for dependents in its own namespace.
    kube_api.create_namespace('elsewhere')
    http.post(CM, cm_body('alive-owner'), expect=201)
    owner = http.get(f'{CM}/alive-owner').json()
    http.post('/api/v1/namespaces/elsewhere/configmaps', cm_body('cross', ownerReferences=owned_by(owner)), expect=201)
    http.post(CM, cm_body('same', ownerReferences=owned_by(owner)), expect=201)
    wait_for(lambda: not kube_api.exists('configmaps', 'cross', 'elsewhere'), timeout=3)
    assert kube_api.exists('configmaps', 'same', 'default')


# --------------------------------------------------------------------------------------------------
# 8. Namespaces and cluster-scoped kinds
# --------------------------------------------------------------------------------------------------

def test_namespaces_must_exist(http, kube_api):
    names = [i['metadata']['name'] for i in http.get('/api/v1/namespaces', expect=200).json()['items']]
    assert names == ['default', 'kube-node-lease', 'kube-public', 'kube-system']
    assert http.post('/api/v1/namespaces/nowhere/configmaps', cm_body('a'), expect=404).json()['message'] == \
        'namespaces "nowhere" not found'
    ns = http.post('/api/v1/namespaces', {'metadata': {'name': 'created'}}, expect=201).json()
    assert ns['status'] == {'phase': 'Active'}
    assert ns['metadata']['labels'] == {'kubernetes.io/metadata.name': 'created'}
    http.post('/api/v1/namespaces/created/configmaps', cm_body('a'), expect=201)
    http.post('/api/v1/namespaces/created/configmaps', dict(cm_body('b'), metadata={'name': 'b', 'namespace': 'default'}),
              expect=400)


def test_namespace_deletion_terminates_its_contents(http, kube_api):
    kube_api.create_namespace('doomed')
    ns_cm = '/api/v1/namespaces/doomed/configmaps'
    http.post(ns_cm, cm_body('a'), expect=201)
    http.post(ns_cm, cm_body('held', finalizers=['example.com/hold']), expect=201)
    rsp = http.delete('/api/v1/namespaces/doomed', expect=200).json()
    assert rsp['status'] == {'phase': 'Terminating'} and rsp['metadata']['deletionTimestamp']
    wait_for(lambda: not kube_api.exists('configmaps', 'a', 'doomed'), timeout=3)
    assert http.post(ns_cm, cm_body('late'), expect=403).json()['reason'] == 'Forbidden'
    assert kube_api.exists('namespaces', 'doomed')  # still terminating: content is held
    http.patch(f'{ns_cm}/held', {'metadata': {'finalizers': []}}, expect=200)
    wait_for(lambda: not kube_api.exists('namespaces', 'doomed'), timeout=3)


def test_cluster_scoped_kinds(http, kube_api):
    http.post('/api/v1/nodes', {'metadata': {'name': 'node-1', 'labels': {'role': 'worker'}}}, expect=201)
    role = {'metadata': {'name': 'system:octavia-reader'},
            'rules': [{'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['get']}]}
    created = http.post('/apis/rbac.authorization.k8s.io/v1/clusterroles', role, expect=201).json()
    assert 'namespace' not in created['metadata']
    assert http.get('/apis/rbac.authorization.k8s.io/v1/clusterroles/system:octavia-reader', expect=200).json()['rules']
    assert [n['metadata']['name'] for n in http.get('/api/v1/nodes', params={'labelSelector': 'role=worker'}).json()['items']] == ['node-1']
    http.get('/api/v1/namespaces/default/nodes', expect=404)  # cluster-scoped kinds have no namespaced URLs
    assert kube_api.get('clusterroles', 'system:octavia-reader')['rules'][0]['verbs'] == ['get']
    http.delete('/api/v1/nodes/node-1', expect=200)
    assert kube_api.objects('nodes') == []


def test_auto_created_namespaces_are_an_option():
    from kube.shim import EmulatorServer, KubeAPI
    with EmulatorServer(auto_create_namespaces=True) as server:
        http = Http(server.url)
        http.post('/api/v1/namespaces/fresh/configmaps', cm_body('a'), expect=201)
        assert KubeAPI(server).exists('namespaces', 'fresh')


# --------------------------------------------------------------------------------------------------
# Custom resources: structural pruning, defaulting, pluggable validation; the project's real CRD
# --------------------------------------------------------------------------------------------------

SCHEMA_CRD = {
    'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
    'metadata': {'name': 'things.example.com'},
    'spec': {
        'group': 'example.com', 'scope': 'Namespaced',
        'names': {'plural': 'things', 'singular': 'thing', 'kind': 'Thing'},
        'versions': [{
            'name': 'v1', 'served': True, 'storage': True, 'subresources': {'status': {}},
            'schema': {'openAPIV3Schema': {
                'type': 'object',
                'properties': {
                    'spec': {'type': 'object', 'properties': {
                        'size': {'type': 'integer', 'default': 1},
                        'opts': {'type': 'object', 'additionalProperties': {'type': 'string'}},
                        'items': {'type': 'array', 'items': {'type': 'object', 'properties': {
                            'name': {'type': 'string'}, 'mode': {'type': 'string', 'default': 'rw'}}}},
                        'free': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True},
                    }},
                    'status': {'type': 'object', 'properties': {'phase': {'type': 'string'}}},
                },
            }},
        }],
    },
}


def test_custom_resources_are_pruned_and_defaulted_like_the_api_server(http, kube_api):
    kube_api.create_crd(SCHEMA_CRD)
    things = '/apis/example.com/v1/namespaces/default/things'
    body = {'metadata': {'name': 't'}, 'unknownTop': 1,
            'spec': {'typo': True, 'opts': {'a': 'b'}, 'items': [{'name': 'x', 'junk': 1}],
                     'free': {'any': {'thing': 1}}}}
    obj = http.post(things, body, expect=201).json()
    assert 'unknownTop' not in obj
    assert obj['spec'] == {'size': 1, 'opts': {'a': 'b'}, 'items': [{'name': 'x', 'mode': 'rw'}],
                           'free': {'any': {'thing': 1}}}
    status = http.patch(f'{things}/t/status', {'status': {'phase': 'Ready', 'kopf': {'progress': {}}}}).json()
    assert status['status'] == {'phase': 'Ready'}  # not preserved by the schema -> pruned silently


def test_a_custom_resource_validator_can_be_plugged_in():
    from kube.shim import EmulatorServer
    calls = []

    def validator(crd, obj, old, version):
        calls.append((crd['metadata']['name'], version, old is None))
        return ['spec.size: must be positive'] if obj['spec'].get('size', 0) < 1 else []

    with EmulatorServer(cr_validator=validator) as server:
        http = Http(server.url)
        http.post('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', SCHEMA_CRD, expect=201)
        things = '/apis/example.com/v1/namespaces/default/things'
        http.post(things, {'metadata': {'name': 'ok'}, 'spec': {'size': 2}}, expect=201)
        rsp = http.post(things, {'metadata': {'name': 'bad'}, 'spec': {'size': 0}}, expect=422)
        assert 'spec.size: must be positive' in rsp.json()['message']
        http.patch(f'{things}/ok', {'spec': {'size': -1}}, expect=422)
    assert calls[0] == ('things.example.com', 'v1', True)


def test_the_projects_crd_loads_and_serves(kube_api, http):
    import pathlib
    crds = sorted((pathlib.Path(__file__).parent.parent / 'deploy' / 'crds').glob('*.yaml'))
    if not crds:
        pytest.skip("no CRDs in deploy/crds")
    for path in crds:
        crd = kube_api.create_crd(str(path))
        group, plural = crd['spec']['group'], crd['spec']['names']['plural']
        version = next(v['name'] for v in crd['spec']['versions'] if v.get('storage'))
        resources = {r['name'] for r in http.get(f'/apis/{group}/{version}', expect=200).json()['resources']}
        assert plural in resources
        has_status = any('status' in (v.get('subresources') or {}) for v in crd['spec']['versions'])
        assert (f'{plural}/status' in resources) == has_status


def test_load_manifests_creates_crds_first(kube_api):
    text = textwrap.dedent('''
        apiVersion: example.com/v1
        kind: Widget
        metadata: {name: w, namespace: default}
        spec: {size: 2}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c}
        data: {a: b}
        ---
    ''') + json.dumps(WIDGET_CRD)
    created = kube_api.load_manifests(text, namespace='default')
    assert [o['kind'] for o in created] == ['CustomResourceDefinition', 'Widget', 'ConfigMap']
    assert kube_api.get('widgets', 'w', 'default')['spec'] == {'size': 2}


# --------------------------------------------------------------------------------------------------
# 9. The official kubernetes client
# --------------------------------------------------------------------------------------------------

def test_official_client_core_and_apps(core, apps, kube_api):
    cm = core.create_namespaced_config_map('default', {'metadata': {'name': 'cfg', 'labels': {'a': 'b'}},
                                                       'data': {'k': 'v'}})
    assert cm.metadata.uid and cm.metadata.resource_version
    read = core.read_namespaced_config_map('cfg', 'default')
    assert read.data == {'k': 'v'}
    patched = core.patch_namespaced_config_map('cfg', 'default', {'data': {'k': None, 'n': 'm'}},
                                               _content_type='application/merge-patch+json')
    assert patched.data == {'n': 'm'}
    patched = core.patch_namespaced_config_map('cfg', 'default', {'data': {'s': 't'}})  # default: strategic
    assert patched.data == {'n': 'm', 's': 't'}
    patched = core.patch_namespaced_config_map('cfg', 'default', [{'op': 'remove', 'path': '/data/s'}])  # json-patch
    assert patched.data == {'n': 'm'}
    body = core.read_namespaced_config_map('cfg', 'default')
    body.data = {'replaced': 'yes'}
    assert core.replace_namespaced_config_map('cfg', 'default', body).data == {'replaced': 'yes'}
    body.data = {'stale': 'yes'}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map('cfg', 'default', body)
    assert e.value.status == 409
    assert [c.metadata.name for c in core.list_namespaced_config_map('default', label_selector='a=b').items] == ['cfg']
    core.delete_namespaced_config_map('cfg', 'default')
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map('cfg', 'default')
    assert e.value.status == 404

    secret = core.create_namespaced_secret('default', {'metadata': {'name': 's'}, 'stringData': {'pw': 'hunter2'}})
    assert secret.data == {'pw': 'aHVudGVyMg=='} and secret.string_data is None and secret.type == 'Opaque'

    apps.create_namespaced_deployment('default', deployment_body('web', replicas=2))
    dep = apps.read_namespaced_deployment('web', 'default')
    assert dep.spec.replicas == 2 and dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment_status('web', 'default', {'status': {'readyReplicas': 2, 'replicas': 2}})
    assert dep.status.ready_replicas == 2 and dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment('web', 'default', {'spec': {'replicas': 3}},
                                           _content_type='application/merge-patch+json')
    assert dep.spec.replicas == 3 and dep.metadata.generation == 2 and dep.status.ready_replicas == 2
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map('missing-ns', {'metadata': {'name': 'x'}})
    assert e.value.status == 404


def test_official_client_custom_objects(custom, kube_api):
    kube_api.create_crd(WIDGET_CRD)
    args = ('example.com', 'v1', 'default', 'widgets')
    created = custom.create_namespaced_custom_object(*args, widget('w1', labels={'tier': 'a'}))
    custom.create_namespaced_custom_object(*args, widget('w2'))
    assert created['metadata']['generation'] == 1
    assert custom.get_namespaced_custom_object(*args, 'w1')['spec'] == {'size': 1}
    patched = custom.patch_namespaced_custom_object(*args, 'w1', {'spec': {'size': 2}})  # merge-patch by default
    assert patched['spec'] == {'size': 2} and patched['metadata']['generation'] == 2
    status = custom.patch_namespaced_custom_object_status(*args, 'w1', {'status': {'phase': 'Ready'}})
    assert status['status'] == {'phase': 'Ready'} and status['metadata']['generation'] == 2
    listed = custom.list_namespaced_custom_object(*args, label_selector='tier=a')
    assert [i['metadata']['name'] for i in listed['items']] == ['w1']
    replaced = custom.replace_namespaced_custom_object(*args, 'w1', dict(status, spec={'size': 9}))
    assert replaced['spec'] == {'size': 9} and replaced['status'] == {'phase': 'Ready'}
    custom.delete_namespaced_custom_object(*args, 'w2')
    assert [i['metadata']['name'] for i in custom.list_namespaced_custom_object(*args)['items']] == ['w1']
    cluster = custom.list_cluster_custom_object('example.com', 'v1', 'widgets')
    assert [i['metadata']['name'] for i in cluster['items']] == ['w1']


def test_official_client_watch(core, http):
    core.create_namespaced_config_map('default', {'metadata': {'name': 'a'}})
    rv = core.list_namespaced_config_map('default').metadata.resource_version
    core.create_namespaced_config_map('default', {'metadata': {'name': 'b'}})
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(core.list_namespaced_config_map, 'default', resource_version=rv, timeout_seconds=1):
        events.append((event['type'], event['object'].metadata.name))
        watch.stop()
    assert events == [('ADDED', 'b')]


# --------------------------------------------------------------------------------------------------
# The fixtures' own API
# --------------------------------------------------------------------------------------------------

def test_kube_api_helpers_and_configuration(kube_api, core):
    assert kube_api.url.startswith('http://127.0.0.1:')
    assert kube_api.configuration().host == kube_api.url
    assert open(kube_api.kubeconfig_path).read().count(kube_api.url) == 1
    info = kube_api.connection_info()
    assert info.server == kube_api.url
    crd = kube_api.create_crd(WIDGET_CRD)
    assert crd['status']['acceptedNames']['kind'] == 'Widget'
    assert kube_api.create_crd(WIDGET_CRD)['metadata']['uid'] == crd['metadata']['uid']  # idempotent
    kube_api.create(widget('w', namespace='default', labels={'x': 'y'}))
    assert [o['metadata']['name'] for o in kube_api.objects('widgets', 'default', label_selector='x=y')] == ['w']
    for ref in ('widgets', 'Widget', 'wd', 'widgets.example.com', 'example.com/v1/widgets'):
        assert kube_api.get(ref, 'w', 'default')['kind'] == 'Widget'
    kube_api.patch('widgets', 'w', {'status': {'phase': 'P'}}, 'default', subresource='status')
    assert kube_api.emulator.objects['example.com/v1/widgets', 'default', 'w'] >= {'status': {'phase': 'P'}}
    assert len(kube_api.emulator.objects['example.com/v1/widgets', 'default', 'w'].history) == 2
    kube_api.delete('widgets', 'w', 'default')
    assert kube_api.get('widgets', 'w', 'default') is None
    assert kube_api.resource_version().isdigit()


def test_user_reactions_take_precedence_for_fault_injection(kube_api, http):
    http.post(CM, cm_body('a'), expect=201)
    kube_api.call(lambda: kube_api.emulator[f'get {CM}/a'] << 503)
    http.get(f'{CM}/a', expect=503)
    http.get(CM, expect=200)  # other requests are still served by the emulator


def test_kube_namespace_fixture(kube_namespace, kube_api):
    assert kube_namespace == 'test-kube-namespace-fixture'
    assert kube_api.exists('namespaces', kube_namespace)


# --------------------------------------------------------------------------------------------------
# kopf end-to-end
# --------------------------------------------------------------------------------------------------

TOY_OPERATOR = textwrap.dedent('''
    import kopf
    import kubernetes

    @kopf.on.create('example.com', 'v1', 'widgets')
    def create_widget(body, spec, name, namespace, uid, patch, logger, **_):
        kubernetes.config.load_kube_config()  # as the real operator would (KUBECONFIG points to the emulator)
        core = kubernetes.client.CoreV1Api()
        core.create_namespaced_config_map(namespace, {
            'metadata': {'name': f'{name}-config', 'ownerReferences': [{
                'apiVersion': body['apiVersion'], 'kind': body['kind'], 'name': name, 'uid': uid,
                'controller': True, 'blockOwnerDeletion': True}]},
            'data': {'size': str(spec.get('size'))},
        })
        patch.status['phase'] = 'Ready'
        kopf.info(body, reason='Configured', message='the configmap is created')  # a k8s Event
        return {'configmap': f'{name}-config'}

    @kopf.on.update('example.com', 'v1', 'widgets', field='spec.size')
    def resize_widget(new, name, namespace, **_):
        kubernetes.config.load_kube_config()
        kubernetes.client.CoreV1Api().patch_namespaced_config_map(
            f'{name}-config', namespace, {'data': {'size': str(new)}},
            _content_type='application/merge-patch+json')

    @kopf.on.delete('example.com', 'v1', 'widgets')
    def delete_widget(name, namespace, **_):
        kubernetes.config.load_kube_config()
        kubernetes.client.CoreV1Api().create_namespaced_config_map(
            namespace, {'metadata': {'name': f'{name}-tombstone'}})
''')


def test_toy_operator_end_to_end(kube_api, run_kopf, tmp_path):
    path = tmp_path / 'toy_operator.py'
    path.write_text(TOY_OPERATOR)
    with run_kopf(str(path), namespace='default') as kopf:
        # The CRD appears while kopf runs: kopf must discover it at runtime.
        kube_api.create_crd(WIDGET_CRD)
        kube_api.create(widget('w1', spec={'size': 3}, namespace='default'))

        kopf.wait_for(lambda: (kube_api.get('widgets', 'w1', 'default').get('status') or {}).get('phase') == 'Ready',
                      message="status.phase=Ready")
        obj = kube_api.get('widgets', 'w1', 'default')
        assert obj['metadata']['finalizers'] == ['kopf.zalando.org/KopfFinalizerMarker']
        assert obj['status']['create_widget'] == {'configmap': 'w1-config'}
        assert 'kopf.zalando.org/last-handled-configuration' in obj['metadata']['annotations']
        # kopf saw the status subresource in discovery: it wrote the status via .../status.
        requests_made = kube_api.call(lambda: [(r.method.value, r.url.path) for r in kube_api.emulator])
        assert ('PATCH', '/apis/example.com/v1/namespaces/default/widgets/w1/status') in requests_made
        cm = kube_api.get('configmaps', 'w1-config', 'default')
        assert cm['data'] == {'size': '3'}
        assert cm['metadata']['ownerReferences'][0]['uid'] == obj['metadata']['uid']

        kube_api.patch('widgets', 'w1', {'spec': {'size': 5}}, 'default')
        kopf.wait_for(lambda: kube_api.get('configmaps', 'w1-config', 'default')['data'] == {'size': '5'},
                      message="the update handler resized the configmap")

        kube_api.delete('widgets', 'w1', 'default')
        kopf.wait_for(lambda: kube_api.get('widgets', 'w1', 'default') is None, message="the widget is gone")
        assert kube_api.exists('configmaps', 'w1-tombstone', 'default')  # the delete handler ran
        kopf.wait_for(lambda: not kube_api.exists('configmaps', 'w1-config', 'default'), message="GC of the configmap")
        kopf.wait_for(lambda: [e for e in kube_api.objects('events', 'default')
                               if e['involvedObject']['name'] == 'w1' and e['reason'] == 'Configured'],
                      message="kopf posted a k8s Event")
    assert "Handler 'create_widget' succeeded" in kopf.logs()


def test_run_kopf_with_a_module_name(kube_api, run_kopf, tmp_path, monkeypatch):
    (tmp_path / 'toy_module_operator.py').write_text(textwrap.dedent('''
        import kopf

        @kopf.on.create('v1', 'configmaps', labels={'toy': 'yes'})
        def mark(patch, **_):
            patch.metadata.annotations['toy/seen'] = 'yes'
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with run_kopf('toy_module_operator', namespace='default', wait_watching=['configmaps']) as kopf:
        kube_api.create(cm_body('x', labels={'toy': 'yes'}), namespace='default')
        kopf.wait_for(lambda: kube_api.get('configmaps', 'x', 'default')['metadata']['annotations'].get('toy/seen'))


@pytest.mark.parametrize('clusterwide', [False, True], ids=['namespaced', 'clusterwide'])
def test_run_kopf_with_inline_handlers_and_a_login_handler(kube_api, run_kopf, clusterwide):
    import kopf as kopf_module
    registry = kopf_module.OperatorRegistry()  # no default logins: only ours can connect
    kopf_module.on.login(registry=registry)(kube_api.kopf_login_handler())
    seen = []

    @kopf_module.on.event('v1', 'configmaps', registry=registry)
    def remember(name, type, **_):
        seen.append((type, name))

    kube_api.create_namespace('other')
    with run_kopf(registry=registry, namespace='default', clusterwide=clusterwide, wait_watching=['configmaps']) as kopf:
        kube_api.create(cm_body('inline'), namespace='default')
        kube_api.create(cm_body('elsewhere'), namespace='other')
        kopf.wait_for(lambda: ('ADDED', 'inline') in seen)
        if clusterwide:
            kopf.wait_for(lambda: ('ADDED', 'elsewhere') in seen)
        else:
            assert ('ADDED', 'elsewhere') not in seen


def test_run_kopf_fails_the_test_when_the_operator_crashes(kube_api, run_kopf, tmp_path):
    path = tmp_path / 'broken_operator.py'
    path.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(pytest.fail.Exception, match='boom at import'):
        with run_kopf(str(path), namespace='default'):
            pass
