"""
A Kubernetes-like API for tests: kmock's ``KubernetesEmulator`` plus a realism shim.

* :mod:`kube.shim` — the emulator subclass (:class:`kube.shim.KubeEmulator`),
  the threaded server (:class:`kube.shim.EmulatorServer`), and the synchronous
  facade used by tests (:class:`kube.shim.KubeAPI`).
* :mod:`kube.plugin` — the pytest plugin: ``kube_api``, ``run_kopf``, ``wait_for``.

See ``docs/testing-kube.md`` for what is emulated and what is not.
"""
