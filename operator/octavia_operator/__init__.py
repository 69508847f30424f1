"""octavia-operator: reconciles OctaviaDeployment resources into a running Octavia."""
__version__ = "0.1.0"
