"""I/O adapters: Kubernetes (kube), one module per OpenStack service (openstack/), the database
server (database) and the message broker (messaging). They raise the errors of ``errors`` and never
import the reconcile (``steps``)."""
