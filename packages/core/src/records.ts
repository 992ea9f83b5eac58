import { BktError } from './errors.js';
import type { BuildContext, StoreRecords } from './types.js';

/** `ctx.records`, or `BktError('UNIMPLEMENTED')` naming `who` when the context has no store. */
export function requireRecords(ctx: Pick<BuildContext, 'records'>, who: string): StoreRecords {
  if (!ctx.records) throw new BktError('UNIMPLEMENTED', `${who} needs the store's records API (BuildContext.records), which this build context lacks`);
  return ctx.records;
}
