import { createJiti } from 'jiti';
const j = createJiti(import.meta.url, { moduleCache: false });
for (const f of ['./bkt.config.ts', './bad.ts']) {
try { console.log(await j.import(new URL(f, import.meta.url).pathname, {default:true})); } catch (e) { console.log('ERR', Object.keys(e), e.message, e.loc, e.stack?.split('\n').slice(0,5)); }
}
