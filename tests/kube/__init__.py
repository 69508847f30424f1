"""A real Kubernetes control plane for the tests (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, from ``$KUBE_ASSETS``).

* :mod:`kube.cluster` — :class:`kube.cluster.KubeCluster` (start/stop by PID, PKI, kubeconfigs,
  tokens, kwok nodes, PersistentVolumes, the audit log) and a small REST client.
* :mod:`kube.plugin` — the pytest plugin: ``kube_cluster``, ``kube_namespace``, ``kube_nodes``,
  ``operator_sa``, ``run_operator`` (the operator as its own process), ``wait_for``.

See ``docs/testing-kube.md``.
"""
