"""Print the rsyslog configuration Octavia itself renders for a new amphora.

Runs under the REAL Octavia's interpreter (``/opt/octavia-venv/bin/python``), not the project's:

    python render_amphora_rsyslog.py /path/to/octavia.conf

It loads the file the way Octavia's services do (``octavia.common.config.init``, oslo.config with
Octavia's option definitions and validation: an unknown ``log_protocol`` or a facility outside
0..7 fails here as it would in the worker) and prints what the worker's ``CertComputeCreate``
task puts on the config drive as ``/etc/rsyslog.d/10-rsyslog.conf``
(``LoggingJinjaTemplater(CONF.amphora_agent.logging_template_override).build_logging_config()``).
"""
import sys

from octavia.common import config
from octavia.common.jinja.logging import logging_jinja_cfg


def main(conf_file: str) -> None:
    config.init(["--config-file", conf_file])
    conf = config.cfg.CONF
    templater = logging_jinja_cfg.LoggingJinjaTemplater(conf.amphora_agent.logging_template_override)
    sys.stdout.write(templater.build_logging_config())


if __name__ == "__main__":
    main(sys.argv[1])
