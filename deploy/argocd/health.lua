-- Argo CD health check of octavia-operator.dev/OctaviaDeployment.
--
-- Installed under the argocd-cm key
--   resource.customizations.health.octavia-operator.dev_OctaviaDeployment
-- by deploy/argocd/argocd-cm-patch.yaml, which carries this exact script (a test checks it).
-- Argo CD runs it with gopher-lua (Lua 5.1) and, unless useOpenLibs is set, only the base and
-- table libraries: no string or math library, no string methods. Keep it that way.
--
-- Rules, first match wins:
--   1. metadata.deletionTimestamp set: Degraded when the operator's Deleting condition is False
--      with a reason that needs the user (e.g. DeletionBlocked), else Progressing. Argo CD itself
--      never calls a health check on an object being deleted (it reports "Pending deletion");
--      this rule is for other callers (tests/argocd_health.py, tools that run the script directly).
--   2. no status, or status.observedGeneration (or Ready's observedGeneration) older than
--      metadata.generation: Progressing (the operator has not looked at this spec yet).
--   3. Ready missing or Unknown: Progressing.
--   4. Ready True: Healthy.
--   5. Ready False: REASONS[reason] == "Progressing": Progressing; anything else, a reason
--      missing from the table included: Degraded. The message is Ready's message (it names the
--      first condition that is not True, its reason and its message).

-- Every reason the operator reports on a condition that is not True. Ready copies the reason
-- of the first such condition. "Progressing": the operator is converging or retrying something
-- that clears by itself. "Degraded": the user must act (fix the spec, a Secret, the cloud...).
local REASONS = {
  -- converging: waiting for its own children or for a step that has not run yet
  Waiting = "Progressing",                  -- a dependency is not ready (Unknown), o-hm0 not plumbed yet
  Starting = "Progressing",                 -- embedded MariaDB/RabbitMQ StatefulSet not ready yet
  Running = "Progressing",                  -- the db-sync Job is running
  RollingOut = "Progressing",               -- Deployments not all updated and available yet
  Upgrading = "Progressing",                -- a release upgrade rolls the services one by one
  Partial = "Progressing",                  -- o-hm0 on some nodes only (reported with status True today)
  Pending = "Progressing",                  -- reserved: not reported today
  -- transient (TransientError): retried with backoff, clears by itself
  CloudUnreachable = "Progressing",
  CloudError = "Progressing",               -- OpenStack answered 5xx
  DatabaseUnreachable = "Progressing",
  MessagingUnreachable = "Progressing",
  ImageUploadIncomplete = "Progressing",    -- the partial image was deleted; uploaded again
  -- the spec and the operator's own setup
  InvalidSpec = "Degraded",
  NoCloudClient = "Degraded",
  InternalError = "Degraded",               -- unexpected exception: see the operator's log
  -- cloud credentials and connection
  CredentialsSecretNotFound = "Degraded",
  CredentialsSecretKeyMissing = "Degraded",
  CABundleNotFound = "Degraded",
  InvalidCloudsYaml = "Degraded",
  CloudNotFound = "Degraded",
  InvalidCloudConfig = "Degraded",
  CloudAuthFailed = "Degraded",
  EndpointNotFound = "Degraded",
  Forbidden = "Degraded",
  QuotaExceeded = "Degraded",
  NotFound = "Degraded",
  Rejected = "Degraded",
  -- OpenStack resources
  DomainNotFound = "Degraded",
  RoleNotFound = "Degraded",
  ServiceUserPasswordUnknown = "Degraded",  -- an existing user: give its password or allow a reset
  RegionNotFound = "Degraded",
  Ambiguous = "Degraded",
  OwnedByAnotherDeployment = "Degraded",
  ImageNotFound = "Degraded",
  ImageNotActive = "Degraded",
  ImageInUse = "Degraded",
  InvalidChecksum = "Degraded",
  ImageChecksumMismatch = "Degraded",
  ImageDownloadFailed = "Degraded",         -- also raised for 5xx/timeouts: clears on the next retry
  NovaTooOld = "Degraded",
  FlavorNotFound = "Degraded",
  KeypairConflict = "Degraded",
  NetworkNotFound = "Degraded",
  SubnetMismatch = "Degraded",
  AllocationPoolExhausted = "Degraded",
  NoNodes = "Degraded",
  PortBindingFailed = "Degraded",
  NoBoundPorts = "Degraded",
  InvalidQuota = "Degraded",
  -- Secrets, certificates, database, messaging
  VolumeNotBound = "Degraded",              -- the embedded server's claim does not bind: a storage class
  StorageChangeIgnored = "Degraded",        -- (reported with status True today)
  SecretNotFound = "Degraded",
  SecretKeyMissing = "Degraded",
  CASecretNotFound = "Degraded",
  InvalidCertificateInput = "Degraded",
  InvalidDatabaseName = "Degraded",
  InvalidDatabaseURL = "Degraded",
  DatabaseAuthFailed = "Degraded",
  DatabaseForbidden = "Degraded",
  DatabaseNotFound = "Degraded",
  DatabaseError = "Degraded",
  InvalidTransportURL = "Degraded",
  InvalidMessagingName = "Degraded",
  InvalidMessagingUser = "Degraded",
  MessagingAuthFailed = "Degraded",
  MessagingForbidden = "Degraded",
  MessagingError = "Degraded",
  DatabaseSyncFailed = "Degraded",
  PolicyConfigMapNotFound = "Degraded",
  PolicyConfigMapKeyMissing = "Degraded",
  InvalidPolicy = "Degraded",
  PersistenceDatabaseMissing = "Degraded",  -- jobboard with an external database: give jobboard.persistence
  InvalidOVNConnection = "Degraded",        -- providers.ovn: the nb/sb values in its Secret
  ReleaseSkipped = "Degraded",              -- spec.release skips a release: go one at a time
  DowngradeRefused = "Degraded",            -- spec.release older than what runs
  GatewayAPIMissing = "Degraded",           -- spec.api.expose HTTPRoute without the Gateway API installed
  WaitingForAddress = "Progressing",        -- the LoadBalancer Service has no address yet
  KindNotDiscoveredYet = "Progressing",     -- the CRD was installed moments ago
  RolloutFailed = "Degraded",               -- an amphora failover failed: the rollout stopped
  AmphoraConfigFailed = "Degraded",         -- retried with backoff, but an amphora that cannot hear the
                                            -- new health-manager list needs a look (or a failover)
  -- deletion (deletionPolicy Delete)
  DeletionBlocked = "Degraded",
}

local function condition(status, ctype)
  if type(status) ~= "table" or type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c.message ~= nil and c.message ~= "" then
    return tostring(c.message)
  end
  if c.reason ~= nil and c.reason ~= "" then
    return tostring(c.reason)
  end
  return fallback
end

local function needs_user(reason)
  return REASONS[reason] ~= "Progressing"
end

local hs = {}
local meta = obj.metadata
if type(meta) ~= "table" then
  meta = {}
end
local status = obj.status

-- 1. being deleted
if meta.deletionTimestamp ~= nil then
  local deleting = condition(status, "Deleting")
  if deleting ~= nil and deleting.status == "False" and needs_user(deleting.reason) then
    hs.status = "Degraded"
    hs.message = "deletion is blocked: " .. describe(deleting, "see the Deleting condition")
  else
    hs.status = "Progressing"
    hs.message = "Pending deletion"
  end
  return hs
end

-- 2. no status yet, or a status about an older spec
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report a status"
  return hs
end
local ready = condition(status, "Ready")
local generation = tonumber(meta.generation)
if generation ~= nil then
  -- status.observedGeneration, and Ready's own observedGeneration: either one being older counts
  local stale = nil
  local observed = tonumber(status.observedGeneration)
  if observed ~= nil and observed < generation then
    stale = observed
  elseif ready ~= nil then
    observed = tonumber(ready.observedGeneration)
    if observed ~= nil and observed < generation then
      stale = observed
    end
  end
  if stale ~= nil then
    hs.status = "Progressing"
    hs.message = "waiting for the operator to reconcile generation " .. tostring(generation) ..
      " (observed generation " .. tostring(stale) .. ")"
    return hs
  end
end

-- 3. Ready not reported yet, or Unknown
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report the Ready condition"
  return hs
end
if ready.status == "True" then
  -- 4.
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
if ready.status ~= "False" then
  hs.status = "Progressing"
  hs.message = "Ready is " .. tostring(ready.status or "Unknown") .. ": " .. describe(ready, "no reason given")
  return hs
end

-- 5. Ready False: still converging, or needs the user
if needs_user(ready.reason) then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready, "Ready is False")
return hs
