import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { pseudonymize } from '../../src/events/pseudonym.ts';
import {
  archiveKeys,
  longestRetentionDays,
  monthOf,
  monthOfPartition,
  monthRange,
  parseMonth,
  retentionCutoff,
  shortestRetentionDays,
} from '../../src/retention/policy.ts';

const policy = { defaultDays: 30, byService: { audit: 365, debug: 7 } };

describe('retention policy', () => {
  it('cuts each service off at its own retention', () => {
    const now = new Date('2026-11-29T12:00:00Z');
    expect(retentionCutoff(policy, 'checkout', now).toISOString()).toBe('2026-10-30T12:00:00.000Z');
    expect(retentionCutoff(policy, 'audit', now).toISOString()).toBe('2025-11-29T12:00:00.000Z');
    expect(retentionCutoff(policy, 'debug', now).toISOString()).toBe('2026-11-22T12:00:00.000Z');
    expect(longestRetentionDays(policy)).toBe(365);
    expect(shortestRetentionDays(policy)).toBe(7);
    expect(shortestRetentionDays({ defaultDays: 30, byService: {} })).toBe(30);
  });

  it('maps instants, labels and partition names to UTC months', () => {
    const m = monthOf(new Date('2026-12-31T23:59:59.999Z'));
    expect(m).toMatchObject({ label: '2026-12', partition: 'events_2026_12' });
    expect(m.from.toISOString()).toBe('2026-12-01T00:00:00.000Z');
    expect(m.to.toISOString()).toBe('2027-01-01T00:00:00.000Z');
    expect(monthOfPartition('events_2026_02')?.label).toBe('2026-02');
    expect(monthOfPartition('events_default')).toBeUndefined();
    expect(monthOfPartition('events_2026_13')).toBeUndefined();
    expect(() => parseMonth('2026-1')).toThrow(/YYYY-MM/);
    expect(monthRange(parseMonth('2026-11'), parseMonth('2027-02')).map((x) => x.label)).toEqual([
      '2026-11',
      '2026-12',
      '2027-01',
      '2027-02',
    ]);
    expect(monthRange(parseMonth('2026-11'), parseMonth('2026-10'))).toEqual([]);
  });

  it('names archive objects in Hive layout with the manifest beside the Parquet file', () => {
    const keys = archiveKeys(
      parseMonth('2026-04'),
      'web.app',
      new Date('2026-11-29T03:15:00.123Z'),
      '1f0c2a9b-0000-4000-8000-000000000000',
    );
    expect(keys).toEqual({
      objectKey: 'events/year=2026/month=04/service=web.app/part-20261129T031500Z-1f0c2a9b.parquet',
      manifestKey: 'events/year=2026/month=04/service=web.app/part-20261129T031500Z-1f0c2a9b.manifest.json',
    });
  });

  it('pseudonymises with HMAC-SHA256 under the secret, deterministically', () => {
    const expected = createHmac('sha256', 's3cret-s3cret-s3cret').update('alice').digest('hex');
    expect(pseudonymize('s3cret-s3cret-s3cret', 'alice')).toBe(expected);
    expect(pseudonymize('another-secret-value', 'alice')).not.toBe(expected);
  });
});

describe('retention configuration', () => {
  it('has working defaults and validates the schedule', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      RETENTION_SCHEDULE: '@daily',
      ARCHIVE_DIR: '.data/archive',
      ARCHIVE_S3_FORCE_PATH_STYLE: true,
      ARCHIVE_S3_CHECKSUMS: 'when_supported',
      PII_METADATA_KEYS: ['email', 'ip', 'phone', 'name'],
      RESTORE_HOLD_DAYS: 7,
    });
    expect(loadConfig({ RETENTION_SCHEDULE: '0 3 * * *' }).RETENTION_SCHEDULE).toBe('0 3 * * *');
    expect(loadConfig({ RETENTION_SCHEDULE: 'off' }).RETENTION_SCHEDULE).toBe('off');
    expect(() => loadConfig({ RETENTION_SCHEDULE: 'every day' })).toThrow(/RETENTION_SCHEDULE/);
    expect(loadConfig({ ARCHIVE_S3_FORCE_PATH_STYLE: 'false' }).ARCHIVE_S3_FORCE_PATH_STYLE).toBe(false);
    expect(loadConfig({ PII_METADATA_KEYS: ' email , ssn ,' }).PII_METADATA_KEYS).toEqual(['email', 'ssn']);
  });

  it('refuses anonymisation without a secret, and bad archive settings', () => {
    expect(() => loadConfig({ ANONYMIZE_AFTER_DAYS: '30' })).toThrow(/ANONYMIZE_SECRET/);
    expect(() => loadConfig({ ANONYMIZE_AFTER_DAYS: '30', ANONYMIZE_SECRET: 'short' })).toThrow(ConfigError);
    expect(
      loadConfig({ ANONYMIZE_AFTER_DAYS: '30', ANONYMIZE_SECRET: 'long-enough-secret-1' })
        .ANONYMIZE_AFTER_DAYS,
    ).toBe(30);
    expect(() => loadConfig({ ARCHIVE_S3_ENDPOINT: 'minio:9000' })).toThrow(/ARCHIVE_S3_ENDPOINT/);
    expect(() => loadConfig({ ARCHIVE_S3_CHECKSUMS: 'sometimes' })).toThrow(/ARCHIVE_S3_CHECKSUMS/);
  });
});
