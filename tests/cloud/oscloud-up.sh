#!/bin/bash
# oscloud-up.sh -- start a minimal but REAL OpenStack control plane on 127.0.0.1, for tests:
#   MariaDB + Keystone + Neutron (ML2/OVS, no agents, optional fake agent rows) + Glance (file store)
#   + Nova API (flavors/keypairs) + Octavia API (optional).
# Recipe and measurements: shared/notes/openstack-loopback.md. How to use it: docs/testing-cloud.md.
#
#   MODE=deb   (default) Debian bookworm packages (OpenStack Zed), their eventlet servers;
#              install them first with tests/cloud/install-deb.sh
#   MODE=pypi  a venv ($VENV) with keystone/neutron/glance/nova/octavia from PyPI, under uWSGI
#              (route B of the notes; not installed by this repo's scripts, not run by CI)
#
# Env: OSCLOUD_BASE            state dir (default /tmp/oscloud/run); reused if it exists (warm start)
#      OSCLOUD_ADMIN_PASSWORD  password of the keystone 'admin' user (default: a test-only value below)
#      WITH_OCTAVIA=1|0        run the Octavia API (default 1)
#      DB_PORT                 MariaDB TCP port (default 3306)
#      LEGACY_POLICY=1|0       1 (default): enforce_scope/enforce_new_defaults = false everywhere
#      FAKE_OVS_AGENT_HOSTS    "host1 host2 ...": fake 'Open vSwitch agent' rows in Neutron so that ports
#                              with binding:host_id=<host> really bind (vif_type=ovs).
#                              Unset: "node-0 node-1 node-2 controller-0"; set to "" for none.
# Writes: $OSCLOUD_BASE/clouds.yaml          (cloud "oscloud", admin, mode 600)
#         $OSCLOUD_BASE/secrets/db-admin.json (MariaDB account WITH GRANT OPTION for tests, mode 600)
#         $OSCLOUD_BASE/fake-agent-hosts     (one host per line)
#         $OSCLOUD_BASE/run/*.pid, $OSCLOUD_BASE/log/*
# Stop with oscloud-down.sh (kills only the PIDs recorded in $OSCLOUD_BASE/run).
set -Eeuo pipefail
MODE=${MODE:-deb}
BASE=$(realpath -m "${OSCLOUD_BASE:-/tmp/oscloud/run}")
WITH_OCTAVIA=${WITH_OCTAVIA:-1}
# Test-only default; this cloud listens on 127.0.0.1 only and lives for one test session.
PW=${OSCLOUD_ADMIN_PASSWORD:-oscloud-test-admin-pw}
H=127.0.0.1
DB_PORT=${DB_PORT:-3306}
FAKE_HOSTS=${FAKE_OVS_AGENT_HOSTS-node-0 node-1 node-2 controller-0}
DB_ADMIN_USER=oscloud_dbadmin
HERE=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s%N)
ts() { awk -v a="$T0" -v b="$(date +%s%N)" -v m="$*" 'BEGIN { printf "[%6.1fs] %s\n", (b - a) / 1e9, m }'; }
PORTS="$DB_PORT 5000 9696 9292 8774"; [ "$WITH_OCTAVIA" = 1 ] && PORTS="$PORTS 9876"
SERVICES="mysql keystone neutron glance nova"; [ "$WITH_OCTAVIA" = 1 ] && SERVICES="$SERVICES octavia"
E=$BASE/etc; L=$BASE/log; R=$BASE/run

alive() { # name : its recorded PID is running AND is ours (its command line names $BASE/), so a
         # PID reused by another process after a reboot or a lost session is never touched
  local p; [ -f "$R/$1.pid" ] && p=$(cat "$R/$1.pid") && kill -0 "$p" 2>/dev/null &&
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$BASE/"
}
port_busy() { (exec 3<>"/dev/tcp/$H/$1") 2>/dev/null; }

# ---------------- already running? stale state? busy ports? ----------------
if [ -d "$R" ]; then
  n_alive=0; n_all=0
  for s in $SERVICES; do n_all=$((n_all + 1)); alive "$s" && n_alive=$((n_alive + 1)); done
  if [ "$n_alive" = "$n_all" ] && [ -f "$BASE/clouds.yaml" ] && \
     [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://$H:5000/v3" || true)" = 200 ]; then
    echo "oscloud already running from $BASE (OS_CLIENT_CONFIG_FILE=$BASE/clouds.yaml OS_CLOUD=oscloud)"
    exit 0
  fi
  if [ "$n_alive" != 0 ]; then
    echo "oscloud: $n_alive of $n_all services of $BASE still running; stopping them first" >&2
    OSCLOUD_BASE=$BASE "$HERE/oscloud-down.sh"
  fi
  rm -f "$R"/*.pid
fi
rm -f "$BASE/clouds.yaml"   # written again at the very end: its presence means "all up"
busy=""
for p in $PORTS; do port_busy "$p" && busy="$busy $p"; done
if [ -n "$busy" ]; then
  echo "oscloud-up: port(s)$busy on $H already in use -- another cloud (other OSCLOUD_BASE?) or a service" >&2
  echo "  is running. Stop it first (OSCLOUD_BASE=<its dir> tests/cloud/oscloud-down.sh)." >&2
  ss -ltnp 2>/dev/null | grep -E ":($(echo $busy | tr ' ' '|'))\b" >&2 || true
  exit 1
fi

P=()   # PIDs of the background "migrate then start" pipelines
on_err() {
  trap - ERR; set +e
  [ "${BASHPID:-$$}" = "$$" ] || exit 1      # inside a pipeline subshell: just fail, main shell cleans up
  echo "oscloud-up FAILED (line ${1:-?}); stopping what was started. Log tails from $L:" >&2
  for f in "$L"/*; do
    [ -f "$f" ] || continue
    case "$f" in */mysql-install.log) continue;; esac   # the installer's banner, never the cause
    echo "===== tail -n 25 $f =====" >&2
    tail -n 25 "$f" >&2
  done
  for p in "${P[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
  sleep 1; OSCLOUD_BASE=$BASE "$HERE/oscloud-down.sh"; exit 1
}
trap 'on_err $LINENO' ERR

if [ "$MODE" = deb ]; then
  BIN=/usr/bin; PY=/usr/bin/python3
  for b in mariadbd keystone-manage neutron-server glance-api nova-api uwsgi_python311; do
    command -v $b >/dev/null || { echo "oscloud-up: $b not found: run tests/cloud/install-deb.sh first" >&2; exit 1; }
  done
  UWSGI="/usr/bin/uwsgi_python311"; UW_EXTRA=""
  KS_APP="--wsgi-file /usr/bin/keystone-wsgi-public"
  NEUTRON_PASTE=/usr/share/neutron-common/api-paste.ini
  GLANCE_PASTE=/usr/share/glance-common/glance-api-paste.ini
  NOVA_PASTE=/usr/share/nova-common/api-paste.ini
else
  V=${VENV:-/tmp/oscloud/venv-pypi}
  BIN=$V/bin; PY=$V/bin/python
  UWSGI="$V/bin/uwsgi --home $V"
  UW_EXTRA="--http-auto-chunked --http-raw-body --chunked-input-limit 4096000"  # glance uploads
  KS_APP="--module keystone.wsgi.api:application"
  NEUTRON_PASTE=$V/etc/neutron/api-paste.ini
  GLANCE_PASTE=$V/etc/glance/glance-api-paste.ini
  NOVA_PASTE=$V/etc/nova/api-paste.ini
fi
# uWSGI: one process, 4 threads; "Connection: close" because --http-socket does not do
# keep-alive and python-requests would otherwise reuse a closed socket (ECONNRESET).
UW="$UWSGI --master --processes 1 --threads 4 --die-on-term --lazy-apps --buffer-size 65535
    --add-header Connection:close --chdir $BASE/ $UW_EXTRA"

mkdir -p $BASE/{etc,log,run,lock,mysql,secrets,keystone,neutron,nova,glance/images,glance/staging,glance/tasks}
chmod 700 $BASE/secrets

start() { # name cmd... : run in background, remember the PID
  local n=$1; shift
  "$@" >>$L/$n.stdout 2>&1 </dev/null &
  echo $! > $R/$n.pid
}
waithttp() { # port name : wait until the port answers HTTP (any status)
  local code
  for i in $(seq 600); do
    code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' http://$H:$1/ || true)
    [ "$code" != "000" ] && return 0
    kill -0 "$(cat $R/$2.pid)" 2>/dev/null || { echo "$2 died" >&2; return 1; }
    sleep 0.5
  done
  echo "$2 did not come up" >&2; return 1
}
secret() { # file : print the secret stored in $BASE/secrets/<file>, creating a random one first
  local f=$BASE/secrets/$1
  if [ ! -s "$f" ]; then
    (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$f")
  fi
  cat "$f"
}
DBPW=$(secret db-os.password)            # the services' own SQL user 'os'
SVCPW=$(secret service-users.password)   # keystone users neutron/glance/nova/octavia
DBADMPW=$(secret db-admin.password)      # the tests' SQL account (os_db_admin fixture)

# ---------------- MariaDB (Debian package, started by hand, durability off) ----------------
if [ ! -d $BASE/mysql/mysql ]; then
  mariadb-install-db --no-defaults --user=root --datadir=$BASE/mysql \
     --auth-root-authentication-method=socket --skip-test-db >$L/mysql-install.log 2>&1
fi
start mysql mariadbd --no-defaults --user=root --datadir=$BASE/mysql --socket=$R/mysql.sock \
  --pid-file=$R/mysqld.pid --bind-address=$H --port=$DB_PORT --skip-name-resolve \
  --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-flush-log-at-trx-commit=0 \
  --innodb-flush-method=nosync --skip-innodb-doublewrite --skip-sync-frm --skip-log-bin \
  --max-connections=500 --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
  --log-error=$L/mysql.err
for i in $(seq 150); do mariadb-admin --socket=$R/mysql.sock ping >/dev/null 2>&1 && break; sleep 0.2; done
mariadb --socket=$R/mysql.sock -uroot <<SQL
CREATE USER IF NOT EXISTS 'os'@'127.0.0.1' IDENTIFIED BY '$DBPW';
ALTER USER 'os'@'127.0.0.1' IDENTIFIED BY '$DBPW';
GRANT ALL PRIVILEGES ON *.* TO 'os'@'127.0.0.1';
CREATE USER IF NOT EXISTS '$DB_ADMIN_USER'@'127.0.0.1' IDENTIFIED BY '$DBADMPW';
ALTER USER '$DB_ADMIN_USER'@'127.0.0.1' IDENTIFIED BY '$DBADMPW';
GRANT ALL PRIVILEGES ON *.* TO '$DB_ADMIN_USER'@'127.0.0.1' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS keystone; CREATE DATABASE IF NOT EXISTS neutron;
CREATE DATABASE IF NOT EXISTS glance;   CREATE DATABASE IF NOT EXISTS nova_api;
CREATE DATABASE IF NOT EXISTS nova;     CREATE DATABASE IF NOT EXISTS nova_cell0;
CREATE DATABASE IF NOT EXISTS octavia;
SQL
(umask 077; cat > $BASE/secrets/db-admin.json <<J
{"host": "$H", "port": $DB_PORT, "user": "$DB_ADMIN_USER", "password": "$DBADMPW"}
J
)
ts "mariadb up"
DB="mysql+pymysql://os:$DBPW@$H:$DB_PORT"

# ---------------- config files ----------------
if [ "${LEGACY_POLICY:-1}" = 1 ]; then
  # legacy (non-scoped) policy defaults: a project-scoped admin token may do everything
  POLICY=$'[oslo_policy]\nenforce_scope = false\nenforce_new_defaults = false'; SECURE_RBAC=false
else
  POLICY=$'[oslo_policy]\nenforce_scope = true\nenforce_new_defaults = true'; SECURE_RBAC=true
fi
common() { # $1 = service user for keystone_authtoken
cat <<A
[oslo_concurrency]
lock_path = $BASE/lock
$POLICY
[keystone_authtoken]
www_authenticate_uri = http://$H:5000
auth_url = http://$H:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $SVCPW
A
}
(umask 077   # the config files hold passwords
cat > $E/keystone.conf <<C
[DEFAULT]
log_file = $L/keystone.log
[database]
connection = $DB/keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = $BASE/keystone/fernet-keys
[fernet_receipts]
key_repository = $BASE/keystone/fernet-keys
[credential]
key_repository = $BASE/keystone/credential-keys
[cache]
enabled = true
backend = dogpile.cache.memory
[identity]
# bcrypt cost 4 instead of 12: a test cloud, much faster user create / password auth
password_hash_rounds = 4
$POLICY
C

cat > $E/neutron.conf <<C
[DEFAULT]
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
bind_host = $H
bind_port = 9696
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
# in-process fake message bus: no RabbitMQ, no agents
transport_url = fake://
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
# fake agents inserted for FAKE_OVS_AGENT_HOSTS never heartbeat: keep them "alive" for a day
agent_down_time = 86400
api_paste_config = $NEUTRON_PASTE
log_file = $L/neutron.log
state_path = $BASE/neutron
[database]
connection = $DB/neutron
$(common neutron)
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
# the owner tags in a port's POST, as Neutron 2023.1+ takes them anyway (tag-creation); Zed needs this driver
extension_drivers = port_security,tag_ports_during_bulk_creation
[ml2_type_flat]
flat_networks = *
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:200
[ml2_type_vxlan]
vni_ranges = 1:1000
[securitygroup]
enable_security_group = true
C

cat > $E/glance-api.conf <<C
[DEFAULT]
bind_host = $H
bind_port = 9292
workers = 1
log_file = $L/glance.log
enabled_backends = file:file
# Zed's glance refuses to start unless this matches [oslo_policy] enforce_new_defaults
enforce_secure_rbac = $SECURE_RBAC
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $BASE/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $BASE/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $BASE/glance/tasks/
[database]
connection = $DB/glance
[paste_deploy]
flavor = keystone
config_file = $GLANCE_PASTE
$(common glance)
C

cat > $E/nova.conf <<C
[DEFAULT]
transport_url = fake://
my_ip = $H
host = oscloud
enabled_apis = osapi_compute
osapi_compute_listen = $H
osapi_compute_listen_port = 8774
osapi_compute_workers = 1
log_file = $L/nova.log
state_path = $BASE/nova
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $NOVA_PASTE
[api_database]
connection = $DB/nova_api
[database]
connection = $DB/nova
$(common nova)
C

cat > $E/octavia.conf <<C
[DEFAULT]
transport_url = fake://
log_file = $L/octavia.log
[api_settings]
bind_host = $H
bind_port = 9876
auth_strategy = keystone
[database]
connection = $DB/octavia
$(common octavia)
[service_auth]
auth_url = http://$H:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = octavia
password = $SVCPW
C
)
cp $NOVA_PASTE $E/api-paste.ini   # nova's WSGI entry point (pypi) uses the FIRST config file as paste file

# ---------------- Keystone: schema, keys, bootstrap, serve ----------------
KM="$BIN/keystone-manage --config-file $E/keystone.conf"
( $KM db_sync
  [ -d $BASE/keystone/fernet-keys ] || $KM fernet_setup --keystone-user root --keystone-group root
  [ -d $BASE/keystone/credential-keys ] || $KM credential_setup --keystone-user root --keystone-group root
  $KM bootstrap --bootstrap-password "$PW" --bootstrap-admin-url http://$H:5000/v3/ \
     --bootstrap-internal-url http://$H:5000/v3/ --bootstrap-public-url http://$H:5000/v3/ \
     --bootstrap-region-id RegionOne
) >>$L/keystone-manage.log 2>&1
ts "keystone db_sync + bootstrap"
start keystone env OS_KEYSTONE_CONFIG_FILES=$E/keystone.conf $UW --http-socket $H:5000 $KS_APP

# ---------------- other schemas in parallel; each service starts when its schema is ready ----------------
pipeline() { # name, then the migration command(s) as one string, then the server command
  local n=$1 mig=$2; shift 2
  ( eval "$mig" ) >$L/$n-db.log 2>&1 || { echo "$n schema migration failed, see $L/$n-db.log" >&2; return 1; }
  ts "$n schema ready"
  start $n "$@"
}
NM="$BIN/nova-manage --config-file $E/nova.conf"
if [ "$MODE" = deb ]; then
  pipeline neutron "$BIN/neutron-db-manage --config-file $E/neutron.conf upgrade heads" \
           $BIN/neutron-server --config-file $E/neutron.conf & P+=($!)
  pipeline glance "$BIN/glance-manage --config-file $E/glance-api.conf db_sync" \
           $BIN/glance-api --config-file $E/glance-api.conf & P+=($!)
  pipeline nova "$NM api_db sync && $NM cell_v2 map_cell0 --database_connection $DB/nova_cell0 && $NM db sync" \
           $BIN/nova-api --config-file $E/nova.conf & P+=($!)
  if [ "$WITH_OCTAVIA" = 1 ]; then
    pipeline octavia "$BIN/octavia-db-manage --config-file $E/octavia.conf upgrade head" \
           $BIN/octavia-api --config-file $E/octavia.conf & P+=($!)
  fi
else
  pipeline neutron "$BIN/neutron-db-manage --config-file $E/neutron.conf upgrade heads" \
           env OS_NEUTRON_CONFIG_FILES=$E/neutron.conf $UW --http-socket $H:9696 --module neutron.wsgi.api:application & P+=($!)
  pipeline glance "$BIN/glance-manage --config-file $E/glance-api.conf db_sync" \
           env OS_GLANCE_CONFIG_DIR=$E $UW --http-socket $H:9292 --module glance.wsgi.api:application & P+=($!)
  pipeline nova "$NM api_db sync && $NM cell_v2 map_cell0 --database_connection $DB/nova_cell0 && $NM db sync" \
           env OS_NOVA_CONFIG_DIR=$E "OS_NOVA_CONFIG_FILES=api-paste.ini;nova.conf" $UW --http-socket $H:8774 --module nova.wsgi.osapi_compute:application & P+=($!)
  if [ "$WITH_OCTAVIA" = 1 ]; then
    pipeline octavia "$BIN/octavia-db-manage --config-file $E/octavia.conf upgrade head" \
           $UW --http-socket $H:9876 --module octavia.wsgi.api:application --pyargv "--config-file $E/octavia.conf" & P+=($!)
  fi
fi

# ---------------- service users + catalog (plain HTTP to keystone; no CLI needed) ----------------
waithttp 5000 keystone; ts "keystone serving"
OSCLOUD_ADMIN_PASSWORD=$PW OSCLOUD_SERVICE_PASSWORD=$SVCPW \
  $PY "$HERE/register_catalog.py" "http://$H" "$WITH_OCTAVIA" >>$L/register.log 2>&1
ts "service users, roles and catalog registered"

for p in "${P[@]}"; do wait $p; done

# Pretend an Open vSwitch agent runs on these hosts, so that ports created with
# binding:host_id=<host> really bind (vif_type=ovs) instead of ending as binding_failed.
# Rows of fake hosts no longer listed are removed; the heartbeat is refreshed on every start.
fake_sql="DELETE FROM agents WHERE agent_type='Open vSwitch agent' AND topic='N/A'"
for host in $FAKE_HOSTS; do
  [[ "$host" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "bad host name in FAKE_OVS_AGENT_HOSTS: $host" >&2; false; }
  fake_sql="$fake_sql AND host<>'$host'"
done
fake_sql="$fake_sql; UPDATE agents SET heartbeat_timestamp=UTC_TIMESTAMP(), started_at=UTC_TIMESTAMP()
  WHERE agent_type='Open vSwitch agent' AND topic='N/A';"
for host in $FAKE_HOSTS; do
  fake_sql="$fake_sql INSERT INTO agents (id, agent_type, \`binary\`, topic,
    host, admin_state_up, created_at, started_at, heartbeat_timestamp, configurations, \`load\`,
    resources_synced) SELECT UUID(), 'Open vSwitch agent', 'neutron-openvswitch-agent', 'N/A', '$host', 1,
    UTC_TIMESTAMP(), UTC_TIMESTAMP(), UTC_TIMESTAMP(), '{\"bridge_mappings\": {}, \"tunnel_types\": [\"vxlan\"],
    \"tunneling_ip\": \"127.0.0.1\", \"integration_bridge\": \"br-int\", \"datapath_type\": \"system\",
    \"ovs_hybrid_plug\": false}', 0, 1 FROM DUAL WHERE NOT EXISTS
    (SELECT 1 FROM agents WHERE host='$host' AND agent_type='Open vSwitch agent');"
done
mariadb --socket=$R/mysql.sock -uroot neutron -e "$fake_sql"
printf '%s\n' $FAKE_HOSTS > $BASE/fake-agent-hosts
ts "fake OVS agents: ${FAKE_HOSTS:-(none)}"

waithttp 9696 neutron; ts "neutron serving"
waithttp 9292 glance;  ts "glance serving"
waithttp 8774 nova;    ts "nova serving"
if [ "$WITH_OCTAVIA" = 1 ]; then waithttp 9876 octavia; ts "octavia serving"; fi

(umask 077; cat > $BASE/clouds.yaml <<Y
clouds:
  oscloud:
    auth:
      auth_url: http://$H:5000/v3
      username: admin
      password: $PW
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
Y
)
trap - ERR
ts "ALL UP -- OS_CLIENT_CONFIG_FILE=$BASE/clouds.yaml OS_CLOUD=oscloud (logs: $L)"
