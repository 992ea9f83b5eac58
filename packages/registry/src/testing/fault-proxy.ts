/**
 * A fault-injecting proxy for tests: listens on 127.0.0.1, forwards each HTTP
 * request to an upstream registry, and applies the first armed fault whose
 * matcher fits the request. Faults act on the connection itself (reset before
 * answering, drop mid-body) or on what goes back (an injected status, a body
 * with a flipped byte), so the client under test sees what a flaky network or
 * a broken server would show it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultKind =
  /** Destroy the client connection before any response. */
  | { kind: 'reset' }
  /** Answer with this status (and headers) instead of forwarding. */
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Forward, send the headers and the first `afterBytes` bytes of the body, then destroy the connection. */
  | { kind: 'drop'; afterBytes: number }
  /** Forward, but flip one byte of the body (at `at`, default the middle). */
  | { kind: 'corrupt'; at?: number }
  /** Forward without the `Range` header, as a server that can't serve ranges. */
  | { kind: 'no-range' }
  /** Forward only once `until` settles: the test decides when the client gets its answer. */
  | { kind: 'hold'; until: Promise<unknown> };

export interface Fault {
  /** Which requests it applies to. */
  method?: string;
  path: RegExp;
  fault: FaultKind;
  /** How many matching requests it hits before disarming. Default 1; `Infinity` for always. */
  times?: number;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  range?: string;
  /** The fault applied, if any. */
  fault?: FaultKind['kind'];
  status?: number;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT`: use as the registry host in references. */
  host: string;
  /** Arms a fault. Faults are checked in the order they were added. */
  inject(fault: Fault): void;
  /** Disarms every fault. */
  clear(): void;
  /** Every request seen, in order. */
  readonly log: ProxiedRequest[];
  close(): Promise<void>;
}

interface ArmedFault extends Fault {
  remaining: number;
}

/** Starts a proxy to `upstream` (`127.0.0.1:PORT` of a plain-HTTP registry). */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const faults: ArmedFault[] = [];
  const log: ProxiedRequest[] = [];
  const agent = new http.Agent({ keepAlive: true });
  const [upstreamHost, upstreamPort] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))];
  let proxyHost = '';

  const server = http.createServer((req, res) => {
    const entry: ProxiedRequest = { method: req.method ?? '', path: req.url ?? '', range: req.headers.range };
    log.push(entry);
    const armed = faults.find((f) => f.remaining > 0 && (!f.method || f.method === req.method) && f.path.test(req.url ?? ''));
    if (armed) {
      armed.remaining--;
      entry.fault = armed.fault.kind;
    }
    const fault = armed?.fault;

    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      entry.status = fault.status;
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: `injected HTTP ${fault.status}` }] }));
      return;
    }

    if (fault?.kind === 'hold') {
      fault.until.then(forward, forward);
      return;
    }
    forward();

    function forward(): void {
      // Rewrite the upstream's absolute Locations so follow-up requests come back through the proxy.
      const headers = { ...req.headers, host: upstream };
      if (fault?.kind === 'no-range') delete headers.range;
      const upstreamReq = http.request(
        { host: upstreamHost, port: upstreamPort, method: req.method, path: req.url, headers, agent },
        (upRes) => {
          entry.status = upRes.statusCode;
          const outHeaders = { ...upRes.headers };
          if (typeof outHeaders.location === 'string') outHeaders.location = outHeaders.location.replace(`//${upstream}/`, `//${proxyHost}/`);
          if (fault?.kind === 'drop') {
            res.writeHead(upRes.statusCode ?? 502, outHeaders);
            let sent = 0;
            upRes.on('data', (chunk: Buffer) => {
              if (sent >= fault.afterBytes) return;
              const part = chunk.subarray(0, fault.afterBytes - sent);
              sent += part.length;
              res.write(part, () => {
                if (sent >= fault.afterBytes) req.socket.destroy();
              });
            });
            upRes.on('end', () => req.socket.destroy());
            return;
          }
          if (fault?.kind === 'corrupt') {
            const chunks: Buffer[] = [];
            upRes.on('data', (c: Buffer) => chunks.push(c));
            upRes.on('end', () => {
              const body = Buffer.concat(chunks);
              if (body.length > 0) {
                const at = Math.min(fault.at ?? Math.floor(body.length / 2), body.length - 1);
                body[at] ^= 0xff;
              }
              res.writeHead(upRes.statusCode ?? 502, outHeaders);
              res.end(body);
            });
            return;
          }
          res.writeHead(upRes.statusCode ?? 502, outHeaders);
          upRes.pipe(res);
        },
      );
      upstreamReq.on('error', () => req.socket.destroy());
      req.pipe(upstreamReq);
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  proxyHost = `127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    host: proxyHost,
    log,
    inject(fault) {
      faults.push({ ...fault, remaining: fault.times ?? 1 });
    },
    clear() {
      faults.length = 0;
    },
    async close() {
      agent.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
