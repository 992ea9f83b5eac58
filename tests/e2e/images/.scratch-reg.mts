import { startRegistry, pushBusyboxImage } from '@bkt/testkit';
const r = await startRegistry();
const img = await pushBusyboxImage(r, 'library/busybox');
console.log(JSON.stringify({ host: r.host, ref: img.reference }));
process.on('SIGTERM', async () => { await r.stop(); process.exit(0); });
setInterval(() => {}, 1000);
