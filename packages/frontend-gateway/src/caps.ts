/**
 * The capabilities Ping declares (BuildKit's `frontend/gateway/pb/caps.go`
 * and `solver/pb/caps.go` ids): only what bkt implements. `gateway.exec`
 * (NewContainer, ExecProcess) is declared disabled when the build has no
 * container capability.
 */

/** LLBBridge capabilities bkt serves. */
export const FRONTEND_CAPS: readonly string[] = Object.freeze([
  'solve.base',
  'resolveimage',
  'resolveimage.resolvemode',
  'readfile',
  'readdir',
  'statfile',
  'return',
  'returnmap',
  'frontend.caps',
  'frontend.inputs',
  'gateway.solve.metadata',
  'gateway.evaluate',
  'gateway.evaluate.solve',
  'gateway.warnings',
  'gateway.exec',
  'gateway.exec.extrahosts',
  'gateway.exec.securitymode',
]);

/** LLB capabilities of bkt's solver and backends. */
export const LLB_CAPS: readonly string[] = Object.freeze([
  'source.image',
  'source.image.resolvemode',
  'source.local',
  'source.local.unique',
  'source.local.includepatterns',
  'source.local.excludepatterns',
  'source.local.followpaths',
  'source.git',
  'source.git.keepgitdir',
  'source.git.fullurl',
  'source.http',
  'source.http.checksum',
  'source.http.perm',
  'source.ocilayout',
  'exec.meta.base',
  'exec.meta.cgroup.parent',
  'exec.meta.network',
  'exec.meta.proxyenv',
  'exec.meta.security',
  'exec.meta.ulimit',
  'exec.meta.removemountstubs.recursive',
  'exec.mount.bind',
  'exec.mount.bind.readonly',
  'exec.mount.cache',
  'exec.mount.cache.sharing',
  'exec.mount.selector',
  'exec.mount.tmpfs',
  'exec.mount.tmpfs.size',
  'exec.mount.secret',
  'exec.mount.ssh',
  'exec.secret.env',
  'exec.extrahosts',
  'constraints',
  'platform',
  'meta.ignorecache',
  'meta.description',
  'meta.exporter.cache',
  'file.base',
  'file.copy.includepatterns',
  'file.copy.alwaysreplaceexistingdestpaths',
  'merge',
  'diff',
]);
