"""Run with the Octavia venv's python: load config files the way Octavia does, print JSON.

    python octavia_probe.py CONF [CONF...]

Loads the files with ``octavia.common.config.init(['--config-file', a, '--config-file', b])``
(what every Octavia program does at start; later files win), then prints one JSON object:

  values       {"section.key": value} of every option present in either file, as oslo.config
               parsed it (lists as lists, ints as ints), read from ``cfg.CONF``; the keystoneauth
               options of [service_auth], [neutron] and [keystone_authtoken] are registered the way
               Octavia/keystonemiddleware do before reading them;
  secrets      {"section.key": value} of every secret option (spec.SECRET_CONFIG_KEYS), present in
               the files or not (None when unset: what a file without secrets gives);
  unknown      options of the files that nothing registers (for [keystone_authtoken], which
               oslo-config-validator cannot check, against keystonemiddleware's own options plus
               the password auth plugin's);
  deprecated   options of the files that are deprecated (for removal, or by a new name);
  errors       options whose value oslo.config cannot read (a bad type, a stray ``$``), no secret;
  neutron_auth {auth_url, username, project_name, ...} of the keystoneauth plugin Octavia's
               KeystoneSession('neutron') loads (the password is only reported as set/unset).
"""
from __future__ import annotations

import configparser
import json
import os
import sys


def main() -> None:
    files = sys.argv[1:]
    secret_keys = json.loads(os.environ.get("SECRET_KEYS", "[]"))
    from keystoneauth1 import loading as ks_loading
    from keystonemiddleware.auth_token import _opts as ktm_opts
    from oslo_config import cfg

    from octavia.common import config as octavia_config
    from octavia.common import keystone

    octavia_config.init([a for f in files for a in ("--config-file", f)])
    conf = cfg.CONF

    # register what is registered lazily at run time: the keystoneauth plugin options of
    # [neutron] and [service_auth] (as Octavia's KeystoneSession does), and keystonemiddleware's
    # options plus the password plugin's in [keystone_authtoken] (as the API's middleware does)
    password_opts = ks_loading.get_auth_plugin_conf_options("password")
    try:
        auth = keystone.KeystoneSession("neutron").get_auth()
        keystone.KeystoneSession().get_auth()
    except Exception as exc:  # noqa: BLE001 - reported (an empty file has no credentials)
        auth = exc
    for group in ("service_auth", "neutron"):
        for o in password_opts:
            try:
                conf.register_opt(o, group=group)
            except cfg.DuplicateOptError:
                pass
    from oslo_policy import opts as policy_opts   # [oslo_policy]: registered when the API's enforcer starts
    for group, opts in policy_opts.list_opts():
        for o in opts:
            try:
                conf.register_opt(o, group=group)
            except cfg.DuplicateOptError:
                pass
    from oslo_messaging import opts as om_opts   # [DEFAULT] transport_url: registered when RPC starts
    for group, opts in om_opts.list_opts():
        for o in opts:
            try:
                conf.register_opt(o, group=None if group in (None, "DEFAULT") else group)
            except cfg.DuplicateOptError:
                pass
    ktm_all = [o for _, opts in ktm_opts.list_opts() for o in opts] + list(password_opts)
    ktm = {o.dest for o in ktm_all}
    for o in ktm_all:
        try:
            conf.register_opt(o, group="keystone_authtoken")
        except cfg.DuplicateOptError:
            pass

    present: list[tuple[str, str]] = []
    for path in files:
        cp = configparser.ConfigParser(interpolation=None, default_section="__none__")
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        cp.read(path)
        for section in cp.sections():
            for key in cp[section]:
                present.append((section, key))

    values, unknown, deprecated, errors = {}, [], [], []
    for section, key in present:
        name = f"{section}.{key}"
        group = None if section == "DEFAULT" else section
        try:
            value = conf[key] if group is None else conf[group][key]
        except cfg.NoSuchOptError as exc:
            if exc.opt_name == key:
                unknown.append(name)
            else:       # the value refers to another option ($name): oslo.config cannot read it
                errors.append(f"{name}: {type(exc).__name__} (a $ in the value?)")
            continue
        except (cfg.NoSuchGroupError, KeyError):
            unknown.append(name)
            continue
        except Exception as exc:  # noqa: BLE001 - a value oslo.config cannot parse
            errors.append(f"{name}: {type(exc).__name__}")
            continue
        if section == "keystone_authtoken" and key not in ktm:
            unknown.append(name)
        values[name] = value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else str(value)
        opt = (conf._groups[group]._opts if group else conf._opts).get(key, {}).get("opt")
        if opt is not None and (opt.deprecated_for_removal or (opt.dest != key)):
            deprecated.append(name)
        # a deprecated (old) name maps to another option
        if opt is None:
            for o in (conf._groups[group]._opts if group else conf._opts).values():
                if any(d.name == key and (d.group or section) == section for d in o["opt"].deprecated_opts):
                    deprecated.append(name)

    secrets = {}
    for section, key in secret_keys:
        try:
            secrets[f"{section}.{key}"] = conf[key] if section == "DEFAULT" else conf[section][key]
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
            secrets[f"{section}.{key}"] = "<not registered>"
    neutron_auth = {k: getattr(conf.neutron, k, None) for k in
                    ("auth_type", "auth_url", "username", "user_domain_name", "project_name",
                     "project_domain_name", "region_name", "valid_interfaces", "cafile")}
    neutron_auth["password_set"] = bool(getattr(conf.neutron, "password", None))
    neutron_auth["plugin"] = type(auth).__name__
    print(json.dumps({"values": values, "secrets": secrets, "unknown": sorted(set(unknown)),
                      "deprecated": sorted(set(deprecated)), "errors": errors, "neutron_auth": neutron_auth}))


if __name__ == "__main__":
    main()
