import type { control } from '@bkt/api';

type Timestamp = NonNullable<control.UsageRecord['CreatedAt']>;

/** The date of a google.protobuf.Timestamp (millisecond precision). */
export function dateOf(t: Timestamp | undefined): Date | undefined {
  return t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)) : undefined;
}
