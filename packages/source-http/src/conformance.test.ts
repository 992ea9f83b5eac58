import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll } from 'vitest';
import { describeSourceConformance, type SourceFixture } from '@bkt/core/testing';
import { openTestContext } from '@bkt/store/testing';
import httpSource from './index.js';

/** What the local server sends for `/files/hello.txt`; `mutate` changes it. */
let helloBody = 'hello over http\n';
let server: Server;
/** `127.0.0.1:PORT`: a source ref as the solver passes it is the URL without `http://`. */
let hostPort: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/files/hello.txt') res.writeHead(200).end(helloBody);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hostPort = `127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
});

/** The `http` source downloading from a local server into a real store; the `https` scheme is checked by identify only. */
describeSourceConformance('http', async (): Promise<SourceFixture> => {
  helloBody = 'hello over http\n';
  const store = await openTestContext();
  return {
    source: httpSource().sources![0]!,
    context: store.ctx,
    valid: {
      scheme: 'http',
      ref: `//${hostPort}/files/hello.txt`,
      attrs: { 'http.filename': 'greeting.txt', 'http.perm': '0644' },
      expect: { 'greeting.txt': 'hello over http\n' },
    },
    invalid: [
      { scheme: 'https', ref: '//exa mple.com/x', mentions: 'is not a URL' },
      { scheme: 'http', ref: `//${hostPort}/files/hello.txt`, attrs: { 'http.checksum': 'md5:abc' }, mentions: 'http.checksum' },
      { scheme: 'http', ref: `//${hostPort}/files/hello.txt`, attrs: { 'http.filename': '../escape' }, mentions: 'http.filename' },
      { scheme: 'https', ref: '//example.com/x', attrs: { 'http.perm': 'rwx' }, mentions: 'http.perm' },
      { scheme: 'https', ref: '//example.com/x', attrs: { 'http.nosuchattr': '1' }, mentions: 'http.nosuchattr' },
    ],
    mutate: async () => {
      helloBody = 'hello, changed\n';
    },
    cleanup: () => store.close(),
  };
});
