/**
 * Kong's own responses: the error templates of kong/tools/http.lua, the messages of
 * kong/pdk/response.lua and kong/error_handlers.lua, and the headers
 * kong/runloop/handler.lua header_filter adds (Via, Server, X-Kong-*).
 */

export const KONG_VERSION = '3.9.3';
export const SERVER_TOKENS = `kong/${KONG_VERSION}`;

const HTTP_ERROR_MESSAGES: Record<number, string> = {
  400: 'Bad request',
  401: 'Unauthorized',
  402: 'Payment required',
  403: 'Forbidden',
  404: 'Not found',
  405: 'Method not allowed',
  406: 'Not acceptable',
  407: 'Proxy authentication required',
  408: 'Request timeout',
  409: 'Conflict',
  410: 'Gone',
  411: 'Length required',
  412: 'Precondition failed',
  413: 'Payload too large',
  414: 'URI too long',
  415: 'Unsupported media type',
  416: 'Range not satisfiable',
  417: 'Expectation failed',
  418: "I'm a teapot",
  421: 'Misdirected request',
  422: 'Unprocessable entity',
  423: 'Locked',
  424: 'Failed dependency',
  425: 'Too early',
  426: 'Upgrade required',
  428: 'Precondition required',
  429: 'Too many requests',
  431: 'Request header fields too large',
  451: 'Unavailable for legal reasons',
  494: 'Request header or cookie too large',
  500: 'An unexpected error occurred',
  501: 'Not implemented',
  502: 'An invalid response was received from the upstream server',
  503: 'The upstream server is currently unavailable',
  504: 'The upstream server is timing out',
  505: 'HTTP version not supported',
  506: 'Variant also negotiates',
  507: 'Insufficient storage',
  508: 'Loop detected',
  510: 'Not extended',
  511: 'Network authentication required',
};

/** kong.response.error's default message per status. */
export function httpErrorMessage(status: number): string {
  return HTTP_ERROR_MESSAGES[status] ?? `The upstream server responded with ${status}`;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const MIME_TYPES: Record<string, string> = {
  'application/json': JSON_TYPE,
  'text/html': 'text/html; charset=utf-8',
  'text/plain': 'text/plain; charset=utf-8',
  'application/xml': 'application/xml; charset=utf-8',
  'application/*': JSON_TYPE,
  'text/*': 'text/plain; charset=utf-8',
  '*/*': JSON_TYPE,
};

/** kong.tools.http get_response_type: the Accept entry with the highest q wins; default JSON. */
export function responseType(accept: string | undefined, fallback = JSON_TYPE): string {
  let contentType = fallback;
  if (!accept) return contentType;
  let best = 0;
  for (const raw of accept.split(',')) {
    const m =
      /^\s*((?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*)\/(?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*))(?:\s*;\s*q=(1(?:\.0{0,3})?|0(?:\.\d{0,3})?)|\s*;\s*[a-z0-9][a-z0-9\-!#$&^_+.]+(?:=[^;]*)?)*\s*$/i.exec(
        raw,
      );
    if (!m) continue;
    const q = m[2] !== undefined ? Number(m[2]) : 1;
    if (q > best) {
      best = q;
      contentType = mimeType(m[1]) ?? contentType;
    }
  }
  return contentType;
}

function mimeType(mediaType: string): string | undefined {
  const lower = mediaType.toLowerCase();
  const [type, sub] = lower.split('/');
  if (sub === '*') return type === '*' ? JSON_TYPE : MIME_TYPES[`${type}/*`];
  return MIME_TYPES[lower];
}

/** kong.tools.http get_error_template, filled with the message and request id. */
export function errorBody(contentType: string, message: string, requestId: string): string {
  if (contentType.startsWith('text/html')) {
    return `<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>${message}.</p>\n    <p>request_id: ${requestId}</p>\n  </body>\n</html>\n`;
  }
  if (contentType.startsWith('application/xml')) {
    return `<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>${message}</message>\n  <requestid>${requestId}</requestid>\n</error>\n`;
  }
  if (contentType.startsWith('text/plain')) return `${message}\nrequest_id: ${requestId}\n`;
  return `{\n  "message":"${message}",\n  "request_id":"${requestId}"\n}`;
}
