"""The ``ovn_dbs`` fixture (tests/ovn/plugin.py): real OVN Northbound/Southbound ovsdb-servers on 127.0.0.1."""
import json
import os
import re
import subprocess

from ovn import plugin as ovn_plugin


def test_nb_and_sb_answer_on_loopback(ovn_dbs):
    assert re.fullmatch(r"tcp:127\.0\.0\.1:\d+", ovn_dbs.nb)
    assert re.fullmatch(r"tcp:127\.0\.0\.1:\d+", ovn_dbs.sb)
    assert ovn_dbs.nb != ovn_dbs.sb
    for url, name in ((ovn_dbs.nb, "OVN_Northbound"), (ovn_dbs.sb, "OVN_Southbound")):
        out = subprocess.run([ovn_plugin.OVSDB_CLIENT, "--timeout=10", "list-dbs", url], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        assert name in out
    # `init` made the one NB_Global / SB_Global row the ctl tools need
    assert ovn_dbs.nbctl("--bare", "--columns=_uuid", "list", "NB_Global").strip()
    assert ovn_dbs.sbctl("--bare", "--columns=_uuid", "list", "SB_Global").strip()
    # both servers are ours, alive, and hold the pidfiles we asked for
    for key, pid in ovn_dbs.pids().items():
        os.kill(pid, 0)
        assert int((ovn_dbs.base / f"{key}.pid").read_text().strip()) == pid


def test_rows_written_with_nbctl_read_back(ovn_dbs):
    ovn_dbs.nbctl("ls-add", "fixture-ls", "--", "set", "Logical_Switch", "fixture-ls",
                  "external_ids:purpose=test_ovn_dbs")
    ovn_dbs.nbctl("lb-add", "fixture-lb", "192.0.2.10:80", "10.0.0.5:8080", "tcp")
    try:
        rows = json.loads(ovn_dbs.nbctl("--format=json", "--columns=name,external_ids", "list", "Logical_Switch"))
        names = {r[0]: r[1] for r in rows["data"]}
        assert "fixture-ls" in names
        assert ["map", [["purpose", "test_ovn_dbs"]]] == names["fixture-ls"]
        lbs = ovn_dbs.nbctl("--bare", "--columns=name,vips", "find", "Load_Balancer", "name=fixture-lb")
        assert "fixture-lb" in lbs and "192.0.2.10:80=10.0.0.5:8080" in lbs
    finally:
        ovn_dbs.nbctl("--if-exists", "lb-del", "fixture-lb")
        ovn_dbs.nbctl("--if-exists", "ls-del", "fixture-ls")
    assert "fixture-lb" not in ovn_dbs.nbctl("--bare", "--columns=name", "list", "Load_Balancer")


def test_tls_remotes_need_the_client_certificate(ovn_dbs, tmp_path):
    """start_ovn_dbs(tls=True): ssl: remotes with a throwaway CA, as Octavia's [ovn] ovn_*_ca_cert etc. use."""
    dbs = ovn_plugin.start_ovn_dbs(tmp_path, tls=True)
    try:
        assert dbs.nb.startswith("ssl:127.0.0.1:") and dbs.sb.startswith("ssl:127.0.0.1:")
        assert set(dbs.tls) == {"key", "cert", "ca"}
        dbs.nbctl("ls-add", "tls-ls")
        assert "tls-ls" in dbs.nbctl("ls-list")
        assert dbs.sbctl("--bare", "--columns=_uuid", "list", "SB_Global").strip()
        # without the client key/certificate the server is unreachable
        bare = subprocess.run([ovn_plugin.OVN_NBCTL, f"--db={dbs.nb}", "--timeout=5", "ls-list"],
                              capture_output=True, text=True, timeout=30)
        assert bare.returncode != 0 and "tls-ls" not in bare.stdout
    finally:
        dbs.stop()
    for p in dbs.procs.values():
        assert p.poll() is not None
