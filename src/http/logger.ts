// Structured JSON logs. Request headers and bodies are never logged: they carry secrets and
// tokens. Error objects are serialised by pino (message, type, stack) for operators only.
import pino, { type Logger } from 'pino';

export function createLogger(level: string, name = 'keymanager'): Logger {
  return pino({
    name,
    level,
    redact: { paths: ['*.authorization', '*.client_secret', '*.password', '*.token', '*.access_token', '*.refresh_token'], censor: '[redacted]' },
  });
}
