"""Test configuration: the loopback-OpenStack and Kubernetes-emulator plugins.

- ``cloud.plugin`` (tests/cloud/plugin.py): fixtures ``os_cloud``, ``os_cloud_config``,
  ``os_db_admin``, ``fake_agent_hosts``, ``unique_name``; tests marked ``openstack`` skip
  where no loopback cloud runs, and fail instead under CI=true.
- ``kube.plugin`` (tests/kube/plugin.py): fixtures ``kube_api``, ``kube_namespace``,
  ``run_kopf``, ``wait_for``.
"""
pytest_plugins = ["cloud.plugin", "kube.plugin"]
