#!/usr/bin/env node
/**
 * A local registry for this example: Debian's docker-registry on a free
 * 127.0.0.1 port with temporary storage, holding `library/busybox:latest`
 * (made from Debian's busybox-static). Its address goes to ./.registry, where
 * bkt.config.ts reads it. Runs until Ctrl-C, then removes the registry.
 */
import { rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { pushBusyboxImage, startRegistry } from '@bkt/testkit';

const hostFile = fileURLToPath(new URL('./.registry', import.meta.url));
const registry = await startRegistry();
const busybox = await pushBusyboxImage(registry, 'library/busybox');
await writeFile(hostFile, `${registry.host}\n`);
console.log(`registry ${registry.host} serves ${busybox.reference} (${busybox.manifest.digest})`);
console.log('now run `npx bkt build` in another terminal; Ctrl-C stops the registry');

const stop = async () => {
  await rm(hostFile, { force: true });
  await registry.stop();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
setInterval(() => undefined, 1 << 30);
