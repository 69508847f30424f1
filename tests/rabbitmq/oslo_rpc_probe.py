"""Run with the real Octavia's Python (its venv): one oslo.messaging RPC call over $TRANSPORT_URL.

The transport URL comes from the environment (never the command line). Prints "pong:<arg>" on
success; any failure raises (non-zero exit, traceback on stderr). Used by tests/test_messaging.py.
"""
import os
import sys

import oslo_messaging as om
from oslo_config import cfg

conf = cfg.CONF                      # as Octavia does (oslo.messaging registers its tracing options there)
conf([], project="octavia-probe")
transport = om.get_rpc_transport(conf, url=os.environ["TRANSPORT_URL"])
topic = "octavia_probe_" + sys.argv[1]


class Endpoint:
    target = om.Target(namespace=None, version="1.0")

    def ping(self, ctxt, arg):
        return "pong:" + arg


server = om.get_rpc_server(transport, om.Target(topic=topic, server="probe"), [Endpoint()], executor="threading")
server.start()
try:
    client = om.get_rpc_client(transport, om.Target(topic=topic, version="1.0"))
    print(client.prepare(timeout=30).call({}, "ping", arg=sys.argv[1]))
finally:
    server.stop()
    server.wait()
    transport.cleanup()
