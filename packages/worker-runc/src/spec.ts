/**
 * The OCI runtime spec (config.json) of a container, with a container
 * engine's defaults: containerd's capabilities, masked and read-only paths,
 * mounts and rlimits, plus a seccomp profile that refuses the syscalls
 * Docker's default profile refuses to unprivileged containers. INSECURE
 * (privileged) gives every capability, the host's devices, writable /sys and
 * no seccomp, masked or read-only paths.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BktError } from '@bkt/core';
import type { ContainerMount, SecurityMode, Ulimit } from './executor.js';
import type { ResolvedUser } from './user.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The default `pids.max` of a container: generous for any build (make -j,
 * test runners), yet it stops a fork bomb long before the host's pid space
 * (often 32768 or 4194304) runs out. Podman documents 4096 (containers.conf
 * has 2048); Docker and BuildKit set none.
 */
export const DEFAULT_PIDS_LIMIT = 4096;

/** containerd's default capability set. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Every capability up to Linux 6.x (CAP_CHECKPOINT_RESTORE = 40). */
export const ALL_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** Every capability this process may hand on (its bounding set), as a privileged container gets. */
export function privilegedCapabilities(): string[] {
  let bounding = (1n << BigInt(ALL_CAPABILITIES.length)) - 1n;
  try {
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) bounding = BigInt(`0x${m[1]}`);
  } catch {
    // Not Linux /proc: assume all.
  }
  return ALL_CAPABILITIES.filter((_, bit) => (bounding >> BigInt(bit)) & 1n);
}

/** containerd's default masked paths. */
export const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** containerd's default read-only paths. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * Syscalls refused (EPERM) in SANDBOX mode: those Docker's default seccomp
 * profile only allows with CAP_SYS_ADMIN or other capabilities a sandboxed
 * step does not have, plus the kernel-keyring and namespace escapes.
 */
export const DENIED_SYSCALLS = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module', 'finit_module',
  'fsconfig', 'fsmount', 'fsopen', 'fspick', 'get_kernel_syms', 'init_module', 'ioperm', 'iopl', 'kcmp',
  'kexec_file_load', 'kexec_load', 'keyctl', 'lookup_dcookie', 'mount', 'mount_setattr', 'move_mount',
  'name_to_handle_at', 'nfsservctl', 'open_by_handle_at', 'open_tree', 'perf_event_open', 'pivot_root',
  'process_vm_readv', 'process_vm_writev', 'query_module', 'quotactl', 'reboot', 'request_key', 'setns',
  'settimeofday', 'stime', 'swapoff', 'swapon', 'sysfs', '_sysctl', 'umount', 'umount2', 'unshare', 'uselib',
  'userfaultfd', 'ustat', 'vm86', 'vm86old',
];

export interface SpecInput {
  rootfs: string;
  readonlyRootfs?: boolean;
  args: string[];
  env: string[];
  cwd: string;
  user: ResolvedUser;
  hostname: string;
  /** Mounts of the step, after the standard ones; /etc/hosts and /etc/resolv.conf come from `etcFiles`. */
  mounts: ContainerMount[];
  etcFiles: { hosts: string; resolvConf: string };
  ulimits: Ulimit[];
  cgroupsPath: string;
  /** `new`: a fresh namespace (loopback only); a path: join it; `host`: share the host's. */
  netns: 'new' | 'host' | { path: string };
  security: SecurityMode;
  /** The container cgroup's `pids.max`; 0 (or less): no limit of its own. */
  pidsLimit: number;
  /** The process gets a terminal (runc's console). */
  terminal?: boolean;
}

/** The OCI runtime spec (version 1.0.2) for runc. */
export function buildSpec(input: SpecInput): Record<string, unknown> {
  const privileged = input.security === 'insecure';
  const caps = privileged ? privilegedCapabilities() : DEFAULT_CAPABILITIES;
  const namespaces: { type: string; path?: string }[] = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
  ];
  if (input.netns === 'new') namespaces.push({ type: 'network' });
  else if (input.netns !== 'host') namespaces.push({ type: 'network', path: input.netns.path });

  const resources: Record<string, unknown> = { devices: [{ allow: privileged, access: 'rwm' }] };
  if (input.pidsLimit > 0) resources.pids = { limit: input.pidsLimit };
  const linux: Record<string, unknown> = { namespaces, cgroupsPath: input.cgroupsPath, resources };
  if (privileged) {
    linux.devices = hostDevices();
  } else {
    linux.maskedPaths = MASKED_PATHS;
    linux.readonlyPaths = READONLY_PATHS;
    linux.seccomp = seccompProfile();
  }

  return {
    ociVersion: '1.0.2',
    process: {
      terminal: input.terminal ?? false,
      user: { uid: input.user.uid, gid: input.user.gid, additionalGids: input.user.additionalGids },
      args: input.args,
      env: input.env,
      cwd: input.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: rlimits(input.ulimits),
      noNewPrivileges: false,
    },
    root: { path: input.rootfs, readonly: input.readonlyRootfs ?? false },
    hostname: input.hostname,
    mounts: [...standardMounts(privileged), ...etcMounts(input.etcFiles), ...input.mounts.map(ociMount)],
    linux,
  };
}

function standardMounts(privileged: boolean): Record<string, unknown>[] {
  const sysOpts = ['nosuid', 'noexec', 'nodev', privileged ? 'rw' : 'ro'];
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: sysOpts },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: [...sysOpts, 'relatime'] },
  ];
}

function etcMounts(files: { hosts: string; resolvConf: string }): Record<string, unknown>[] {
  return [
    { destination: '/etc/hosts', type: 'bind', source: files.hosts, options: ['rbind', 'rw', 'nosuid', 'nodev'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: files.resolvConf, options: ['rbind', 'rw', 'nosuid', 'nodev'] },
  ];
}

function ociMount(m: ContainerMount): Record<string, unknown> {
  if (m.type === 'tmpfs') {
    const options = ['nosuid', 'nodev', 'strictatime', 'mode=1777'];
    if (m.sizeBytes && m.sizeBytes > 0) options.push(`size=${m.sizeBytes}`);
    return { destination: m.dest, type: 'tmpfs', source: 'tmpfs', options };
  }
  return { destination: m.dest, type: 'bind', source: m.source, options: ['rbind', m.readonly ? 'ro' : 'rw'] };
}

const RLIMIT_NAMES = new Set([
  'AS', 'CORE', 'CPU', 'DATA', 'FSIZE', 'LOCKS', 'MEMLOCK', 'MSGQUEUE', 'NICE', 'NOFILE', 'NPROC', 'RSS', 'RTPRIO',
  'RTTIME', 'SIGPENDING', 'STACK',
]);

/** containerd's default (RLIMIT_NOFILE 1024) overridden by the step's ulimits. */
function rlimits(ulimits: Ulimit[]): { type: string; soft: number; hard: number }[] {
  const byType = new Map<string, { type: string; soft: number; hard: number }>();
  byType.set('RLIMIT_NOFILE', { type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 });
  for (const u of ulimits) {
    const name = u.name.toUpperCase().replace(/^RLIMIT_/, '');
    if (!RLIMIT_NAMES.has(name)) {
      throw new BktError('INVALID_ARGUMENT', `unknown ulimit "${u.name}"`, { attribute: 'ulimit' });
    }
    // -1 means unlimited (RLIM_INFINITY); runc takes it as the max uint64.
    const limit = (v: number) => (v < 0 ? 18446744073709551615 : v);
    byType.set(`RLIMIT_${name}`, { type: `RLIMIT_${name}`, soft: limit(u.soft), hard: limit(u.hard) });
  }
  return [...byType.values()];
}

/** CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET. */
const CLONE_NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

/**
 * The syscall conventions a process can use on this kernel (as Docker's
 * profile lists them): a syscall is checked against its own architecture's
 * numbers, and no other architecture's can occur here — naming them only
 * makes the filter runc compiles for every container longer (emulated
 * binaries run under a native qemu-user process).
 */
function seccompArchitectures(): string[] {
  if (process.arch === 'x64') return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
  if (process.arch === 'arm64') return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
  return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
}

function seccompProfile(): Record<string, unknown> {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: seccompArchitectures(),
    syscalls: [
      { names: DENIED_SYSCALLS, action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
      // clone() creating namespaces is refused one flag at a time (rules on one syscall are OR-ed).
      ...CLONE_NAMESPACE_FLAGS.map((flag) => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: 1,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      })),
      // clone3's flags are behind a pointer seccomp cannot read: ENOSYS makes libc fall back to clone().
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
    ],
  };
}

/** Device nodes of the host's /dev (for privileged containers), as OCI `linux.devices`. */
function hostDevices(): Record<string, unknown>[] {
  const skipDirs = new Set(['pts', 'shm', 'mqueue', 'fd']);
  const skipFiles = new Set(['console', 'ptmx']);
  const out: Record<string, unknown>[] = [];
  const walk = (dir: string, rel: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (rel === '' && skipDirs.has(e.name)) continue;
        walk(path, join(rel, e.name));
      } else if ((e.isCharacterDevice() || e.isBlockDevice()) && !(rel === '' && skipFiles.has(e.name))) {
        try {
          const st = statSync(path);
          const rdev = st.rdev;
          out.push({
            path,
            type: e.isCharacterDevice() ? 'c' : 'b',
            major: Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn),
            minor: Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn),
            fileMode: st.mode & 0o7777,
            uid: st.uid,
            gid: st.gid,
          });
        } catch {
          // Vanished or unreadable device nodes are skipped.
        }
      }
    }
  };
  walk('/dev', '');
  return out;
}
