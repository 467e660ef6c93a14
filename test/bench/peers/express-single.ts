/** The Express app both single-event Express peers share; only how a row is stored differs. */
import express from 'express';
import { type PeerRow, toRow } from './common.ts';

export function expressSingleEventApp(store: (row: PeerRow) => Promise<unknown>, unavailable: string) {
  const app = express();
  app.use(express.json({ limit: '1mb' }));
  app.post('/v1/events', async (req, res) => {
    const row = toRow(req.body, new Date().toISOString());
    if (!row) {
      res.status(400).json({ error: 'invalid event' });
      return;
    }
    try {
      await store(row);
      res.status(202).json({ id: row.id, status: 'accepted' });
    } catch {
      res.status(503).json({ error: unavailable });
    }
  });
  return app;
}
