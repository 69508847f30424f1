"""Test configuration: the loopback-OpenStack and Kubernetes-emulator plugins.

- ``cloud.plugin`` (tests/cloud/plugin.py): fixtures ``os_cloud``, ``os_cloud_config``,
  ``os_db_admin``, ``fake_agent_hosts``, ``unique_name``; tests marked ``openstack`` skip
  where no loopback cloud runs, and fail instead under CI=true.
- ``kube.plugin`` (tests/kube/plugin.py): fixtures ``kube_api``, ``kube_namespace``,
  ``run_kopf``, ``wait_for``.
- ``octavia_real.plugin`` (tests/octavia_real/plugin.py): the real Octavia in its own venv
  (``octavia_venv``, ``octavia_run``, ``octavia_db``), installed by install-octavia.sh.
- ``rabbitmq.plugin`` (tests/rabbitmq/plugin.py): ``rabbitmq_admin``, a real RabbitMQ on 127.0.0.1.
"""
pytest_plugins = ["cloud.plugin", "kube.plugin", "octavia_real.plugin", "rabbitmq.plugin"]
