import { describe, expect, it } from 'vitest';
import { control } from '@bkt/api';
import { historyRecordOf } from './history.js';

const at = { seconds: 1700000000, nanos: 0 };
const record = (partial: Partial<control.BuildHistoryRecord>) => historyRecordOf(control.BuildHistoryRecord.fromPartial({ Ref: 'r', CreatedAt: at, ...partial }));

describe('historyRecordOf: a ListenBuildHistory record as the store keeps it', () => {
  it('tells the status from completion and the error the daemon recorded', () => {
    expect(record({}).status).toBe('running');
    expect(record({ CompletedAt: at }).status).toBe('completed');
    expect(record({ CompletedAt: at, error: { code: 1, message: 'build r cancelled', details: [] } })).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
    expect(record({ CompletedAt: at, error: { code: 13, message: 'interrupted: the process running the build exited before it finished', details: [] } }).status).toBe('interrupted');
    expect(record({ CompletedAt: at, error: { code: 2, message: 'exit code: 3', details: [] } })).toMatchObject({ status: 'failed', error: { code: 'UNKNOWN', message: 'exit code: 3' } });
  });

  it('keeps the frontend, attrs, exporters, counts and exporter response', () => {
    const r = record({
      CompletedAt: { seconds: 1700000002, nanos: 500_000_000 },
      Frontend: 'dockerfile.v0',
      FrontendAttrs: { filename: 'Dockerfile' },
      Exporters: [{ Type: 'local', Attrs: { dest: '/out' } }],
      numTotalSteps: 4,
      numCachedSteps: 1,
      numCompletedSteps: 4,
      ExporterResponse: { k: 'v' },
    });
    expect(r).toEqual({
      ref: 'r',
      frontend: 'dockerfile.v0',
      frontendAttrs: { filename: 'Dockerfile' },
      exporters: [{ type: 'local', attrs: { dest: '/out' } }],
      status: 'completed',
      createdAt: new Date(1700000000000),
      completedAt: new Date(1700000002500),
      numTotalSteps: 4,
      numCachedSteps: 1,
      numCompletedSteps: 4,
      exporterResponse: { k: 'v' },
    });
  });
});
