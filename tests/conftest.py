"""Test configuration: the plugins, and the order of the session.

- ``cloud.plugin`` (tests/cloud/plugin.py): fixtures ``os_cloud``, ``os_cloud_config``,
  ``os_db_admin``, ``fake_agent_hosts``, ``unique_name``; tests marked ``openstack`` skip
  where no loopback cloud runs, and fail instead under CI=true.
- ``kube.plugin`` (tests/kube/plugin.py): a real Kubernetes control plane (``kube_cluster``,
  ``new_kube_cluster``, ``kube_namespace``, ``kube_nodes``), the operator's ServiceAccount
  (``operator_sa``) and the operator as its own process (``run_operator``).
- ``octavia_real.plugin`` (tests/octavia_real/plugin.py): the real Octavia in its own venv
  (``octavia_venv``, ``octavia_run``, ``octavia_db``), installed by install-octavia.sh.
- ``rabbitmq.plugin`` (tests/rabbitmq/plugin.py): ``rabbitmq_admin``, a real RabbitMQ on 127.0.0.1.
- ``redis_real.plugin`` (tests/redis_real/plugin.py): ``redis_server``, real redis-servers on 127.0.0.1.

Tests marked ``last`` run after all others (tests/test_rbac.py reads what the whole session did);
each test's outcome is kept on its item for them.
"""
import pytest

pytest_plugins = ["cloud.plugin", "kube.plugin", "octavia_real.plugin", "rabbitmq.plugin", "redis_real.plugin", "ovn.plugin"]


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or report.failed:
        if getattr(item, "_rbac_outcome", "passed") == "passed":
            item._rbac_outcome = report.outcome
