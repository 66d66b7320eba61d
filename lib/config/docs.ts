import { type FieldModel, mustSupply, type ValueModel } from './model';

/** What the docs need from a plugin definition. */
export interface DocumentedPlugin {
  name: string;
  docsTable(): string;
  /** Cross-field rules in plain words, listed under the table. */
  rules: readonly string[];
}

export interface DocRow {
  /** Nested path such as `targets[].timeouts.connect_ms`. */
  field: string;
  type: string;
  required: boolean;
  default?: unknown;
  constraints: string[];
  description: string;
  secret: boolean;
}

/** One row per field, nested fields after their parent, in declaration order. */
export function docRows(fields: FieldModel[], prefix = ''): DocRow[] {
  return fields.flatMap((field) => {
    const path = prefix === '' ? field.name : `${prefix}.${field.name}`;
    const row: DocRow = {
      field: path,
      type: typeText(field),
      required: mustSupply(field),
      default: field.default,
      constraints: constraintsOf(field),
      description: field.description,
      secret: field.referenceable === true,
    };
    return [row, ...docRows(nestedFields(field), nestedPrefix(field, path))];
  });
}

function nestedFields(model: ValueModel): FieldModel[] {
  return model.fields ?? model.elements?.fields ?? model.values?.fields ?? [];
}

function nestedPrefix(model: ValueModel, path: string): string {
  if (model.elements !== undefined) return `${path}[]`;
  if (model.values !== undefined) return `${path}.<key>`;
  return path;
}

function typeText(model: ValueModel): string {
  if (model.elements !== undefined) return `${model.type} of ${typeText(model.elements)}`;
  if (model.values !== undefined) return `map of string to ${typeText(model.values)}`;
  return model.type;
}

function constraintsOf(model: ValueModel): string[] {
  const out: string[] = [];
  if (model.oneOf !== undefined) out.push(`one of: ${model.oneOf.map((v) => code(v)).join(', ')}`);
  if (model.between !== undefined) out.push(`between ${model.between[0]} and ${model.between[1]}`);
  if (model.gt !== undefined) out.push(`greater than ${model.gt}`);
  const length = lengthText(model);
  if (length !== undefined) out.push(length);
  if (model.pattern !== undefined) out.push(`matches ${code(model.pattern)}`);
  if (model.referenceable) out.push('secret, referenceable (`{vault://...}`)');
  const inner = model.elements ?? model.values;
  if (inner !== undefined && inner.type !== 'record') {
    const innerConstraints = constraintsOf(inner);
    if (innerConstraints.length > 0) {
      out.push(`${model.elements ? 'each element' : 'each value'}: ${innerConstraints.join(', ')}`);
    }
  }
  return out;
}

function lengthText(model: ValueModel): string | undefined {
  const { lenMin, lenMax } = model;
  const unit = (n: number) =>
    model.type === 'string' ? (n === 1 ? 'character' : 'characters') : n === 1 ? 'item' : 'items';
  if (lenMin !== undefined && lenMax !== undefined) return `${lenMin} to ${lenMax} ${unit(lenMax)}`;
  if (lenMax !== undefined) return `at most ${lenMax} ${unit(lenMax)}`;
  // Strings are never empty unless a field says so (Kong's implicit len_min = 1).
  if (lenMin === undefined || (model.type === 'string' && lenMin === 1)) return undefined;
  if (model.type === 'string' && lenMin === 0) return 'may be empty';
  return `at least ${lenMin} ${unit(lenMin)}`;
}

function code(value: unknown): string {
  return '`' + (typeof value === 'string' ? value : JSON.stringify(value)) + '`';
}

/** Markdown cells cannot hold a raw `|` or a line break. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

export function renderTable(rows: DocRow[]): string {
  if (rows.length === 0) return '_No configuration fields in this release._\n';
  const header = [
    '| Field | Type | Required | Default | Constraints | Description |',
    '|---|---|---|---|---|---|',
  ];
  const body = rows.map((r) => {
    const cells = [
      code(r.field),
      r.type,
      r.required ? 'yes' : 'no',
      r.default === undefined ? '' : code(r.default),
      r.constraints.join('; '),
      (r.secret ? '**Secret.** ' : '') + r.description,
    ];
    return `| ${cells.map(cell).join(' | ')} |`;
  });
  return [...header, ...body].join('\n') + '\n';
}

/** The whole of docs/configuration.md. A test compares the committed file with this. */
export function renderConfigDocs(plugins: readonly DocumentedPlugin[]): string {
  const parts = [
    '# Plugin configuration',
    '',
    '<!-- Generated from schemas/*.ts by scripts/gen-config-docs.ts. Do not edit: run `npm run docs:config`. -->',
    '',
    'Each plugin is configured through its `config` record in `kong.yml` or the Admin API.',
    'Required means the field has no default and must be written. A field that is not required',
    'and has no default may be left out or set to `null`. Secret fields are referenceable: write a',
    'Kong vault reference such as `{vault://env/OPENAI_API_KEY}`, never the key itself. Strings may',
    'not be empty unless their constraints say so.',
    'The suite server checks patterns and cross-field rules when it starts a plugin instance',
    '(Kong cannot check them for external plugins) and refuses the whole config, listing every problem.',
  ];
  return [...parts, '', renderPluginSections(plugins, '##')].join('\n');
}

/** One section per plugin: its fields table and its rules across fields. */
export function renderPluginSections(plugins: readonly DocumentedPlugin[], heading: '##' | '###'): string {
  const parts: string[] = [];
  for (const plugin of plugins) {
    if (parts.length > 0) parts.push('');
    parts.push(`${heading} ${plugin.name}`, '', plugin.docsTable().trimEnd());
    if (plugin.rules.length > 0) {
      parts.push('', 'Rules across fields:', '', ...plugin.rules.map((rule) => `- ${rule}`));
    }
  }
  return parts.join('\n') + '\n';
}

const README_START = '<!-- config:start (generated from schemas/*.ts: npm run docs:config) -->';
const README_END = '<!-- config:end -->';

/** The README with its config section (between the markers) regenerated. */
export function embedConfigInReadme(readme: string, plugins: readonly DocumentedPlugin[]): string {
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start < 0 || end < start)
    throw new Error(`README.md lacks the ${README_START} … ${README_END} markers`);
  return `${readme.slice(0, start + README_START.length)}\n\n${renderPluginSections(plugins, '###')}\n${readme.slice(end)}`;
}
