// GET /api/export: the live model as a Hugging Face GPT-2 directory, file by file.
//   GET /api/export                       -> JSON listing: step, config, and each file's URL
//   GET /api/export/<file>[?dtype=f16]    -> that file (names from a fixed list; nothing is
//                                            written on the server, no client-chosen paths)
// Download every listed file into one directory and it loads like `npm run export` output.

import express, { type Request, type Response, type Router } from 'express';
import { AppError } from '../../shared/errors.ts';
import { errorHandler, type ErrorLog } from '../http/errors.ts';
import { EXPORT_FILES, exportFile, parseDtype, type ExportableModel, type ExportFileName } from './export.ts';

export interface ExportContext {
  getModel(): ExportableModel & { step: number };
  /** Where unexpected errors are logged (their text is never sent to the client); default stderr. */
  log?: ErrorLog;
}

export function exportRouter(ctx: ExportContext): Router {
  const r = express.Router();
  r.get('/api/export', (req: Request, res: Response) => {
    const m = ctx.getModel();
    const dtype = parseDtype(req.query.dtype as string | undefined);
    res.json({
      step: m.step,
      dtype,
      config: m.config,
      files: EXPORT_FILES.map((name) => ({ name, url: `/api/export/${name}${dtype === 'f16' ? '?dtype=f16' : ''}` })),
      note: 'download every file into one directory; load with transformers GPT2LMHeadModel.from_pretrained(dir) or `npm run export`-compatible importModel(dir)',
    });
  });
  r.get('/api/export/:file', (req: Request, res: Response) => {
    const name = String(req.params.file);
    if (!(EXPORT_FILES as readonly string[]).includes(name)) {
      throw new AppError('ERR_EXPORT_FILE', `GET /api/export/${name}: no such export file`, 404, `files: ${EXPORT_FILES.join(', ')}`);
    }
    const dtype = parseDtype(req.query.dtype as string | undefined);
    const m = ctx.getModel();
    const bytes = exportFile(name as ExportFileName, m, dtype); // synchronous: a consistent snapshot
    res.set({
      'Content-Type': name.endsWith('.json') ? 'application/json' : 'application/octet-stream',
      'Content-Disposition': `attachment; filename="${name}"`,
      'X-Model-Step': String(m.step),
    });
    res.end(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
  r.use('/api/export', errorHandler(ctx.log, { where: 'GET /api/export', internalCode: 'ERR_EXPORT' }));
  return r;
}
