import type { ObjectStore } from '../archive/object-store.ts';
import { PostgresDestination } from '../store/mat-remote.repo.ts';
import { DuckDbDestination } from './dest-duckdb.ts';
import { ParquetDestination } from './dest-parquet.ts';
import type { Destination } from './destination.ts';
import type { Destination as DestinationSpec } from './spec.ts';

/** The writer of a destination other than a schema of this database (ARCHITECTURE §17). */
export function openDestination(
  spec: DestinationSpec,
  o: { store: ObjectStore | undefined; workDir: string },
): Destination {
  switch (spec.kind) {
    case 'postgres':
      if (spec.connection === undefined)
        throw new Error('a schema of this database has no outside destination');
      return new PostgresDestination(spec.connection, spec.schema);
    case 'duckdb':
      return new DuckDbDestination(spec.path);
    case 'parquet':
      if (!o.store) throw new Error('a Parquet destination needs the archive store');
      return new ParquetDestination(o.store, spec.prefix, o.workDir);
  }
}
