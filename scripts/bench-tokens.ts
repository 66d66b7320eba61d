/**
 * Benchmark: prompt token counting, side by side in one run, o200k_base:
 *   tiktoken       OpenAI's Rust tokenizer built to WASM (the reference; no cache)
 *   gpt-tokenizer  pure JavaScript, with a cache of merged pieces
 *   countTokens    lib/llm/tokens.ts, with a cache of merged pieces
 * The cached ones run warm (every window seen before: repeated system prompts and chat
 * history) and cold (cache emptied before each call: text never seen before).
 *
 *   npm run bench:tokens                      3000 calls per variant and prompt
 *   npm run bench:tokens -- --calls 10000
 *
 * Three 4 KB prompts (UTF-8 bytes): English prose from this repository's docs, TypeScript
 * from lib/, and the CJK text below. Every call counts one of 64 different 4 KB windows of its
 * corpus, as a flat string like JSON.parse makes. The variants take turns in blocks of BLOCK
 * calls, each block on a clean heap: all see the same machine load, and each runs with its own
 * tables in the CPU caches (turns call by call would make each evict the others' tables).
 * countTokens is checked equal to tiktoken on every window. Results go to stdout;
 * docs/benchmarks-tokens.md quotes them.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { clearTokenCache, countTokens, preloadTokenizer } from '../lib/llm/tokens';

const TARGET_MS = 0.5;
const PROMPT_BYTES = 4096;
const WINDOWS = 64;
/** Calls in a row per tokenizer: enough for it to run with its own tables in the CPU caches. */
const BLOCK = 50;

// Written for this benchmark: Chinese, Japanese and Korean prose on varied subjects.
const CJK = [
  '人工智能网关位于应用程序和多个大型语言模型提供商之间，为所有请求提供统一的接口。它负责选择目标模型、在提供商出现故障时切换到备用模型、限制每个团队的令牌预算，并记录每一次调用的延迟和费用。',
  '今天早上下了一场小雨，街道两旁的梧桐树叶被洗得发亮。我撑着伞走到地铁站，发现很多人都在排队买早点：豆浆、油条、包子和煎饼果子的香味混在一起，让人忍不住停下脚步。',
  '做红烧肉的关键在于火候。先把五花肉切成大小均匀的方块，冷水下锅焯去血沫，再用少许油把冰糖炒成焦糖色，然后放入肉块翻炒上色，加入生抽、老抽、料酒和八角，小火慢炖一个小时左右。',
  '唐朝是中国历史上最繁荣的时期之一。长安城人口超过一百万，来自波斯、阿拉伯和日本的商人、僧侣和留学生在这里交流货物与思想。诗人李白和杜甫的作品至今仍被广泛传诵。',
  '在分布式系统中，预算必须在并发请求下依然成立。如果两个请求同时读取剩余额度并各自扣减，就可能超出上限。因此我们在调用提供商之前先预留令牌，调用结束后再根据实际用量结算差额。',
  '请帮我总结下面这份会议记录的要点，并列出每个人负责的任务和截止日期。如果有尚未决定的问题，请单独列出来，方便我们下周一的例会继续讨论。回答请使用简洁的中文。',
  '春节是中国最重要的传统节日。除夕夜，一家人围坐在一起吃年夜饭，看春节联欢晚会，午夜时分燃放烟花爆竹。孩子们最期待的是长辈给的红包，里面装着寓意平安吉祥的压岁钱。',
  '量子计算利用叠加和纠缠等量子力学现象进行运算。与经典比特只能表示零或一不同，量子比特可以同时处于多种状态的叠加。不过，目前的量子计算机仍然容易受到噪声干扰，纠错是最大的挑战之一。',
  '东京の朝は早い。通勤電車は七時を過ぎると満員になり、駅のホームには整然と列が並ぶ。コンビニでおにぎりとお茶を買って、会社に着く前に簡単な朝食を済ませる人も少なくない。',
  'このゲートウェイは、リクエストごとにプロンプトのトークン数を一度だけ数えます。予算プラグインはその値を使って、提供元を呼び出す前にトークンを予約し、応答が終わったら実際の使用量で精算します。',
  '日本料理の基本は出汁である。昆布と鰹節から丁寧に取った出汁は、味噌汁や煮物、うどんのつゆなど、さまざまな料理の味の土台となる。季節の食材を生かすことも大切にされている。',
  '서울의 가을은 짧지만 아름답다. 북한산의 단풍이 붉게 물들면 많은 사람들이 주말마다 등산을 떠난다. 산 정상에서 내려다보는 도시의 풍경은 바쁜 일상을 잠시 잊게 해 준다.',
  '黄河发源于青藏高原，流经九个省区，最后注入渤海。它携带大量泥沙，下游河床不断抬高，形成了举世闻名的“地上悬河”。千百年来，治理黄河一直是历代王朝的大事。',
  '我的笔记本电脑最近运行很慢，打开浏览器要等好几秒，风扇也一直在响。我已经卸载了不常用的软件，清理了磁盘空间，但问题还是没有解决。你能告诉我还应该检查哪些地方吗？',
  '図書館の静かな午後、窓から差し込む光の中で古い小説を読む。ページをめくる音だけが聞こえ、時間がゆっくりと流れていく。読み終えたあとも、物語の余韻がしばらく心に残った。',
  '인공지능 모델의 요금은 입력과 출력 토큰 수에 따라 달라진다. 그래서 게이트웨이는 요청을 보내기 전에 프롬프트의 토큰을 세고, 팀별 예산을 넘지 않도록 미리 예약해 둔다.',
].join('\n\n');

interface Corpus {
  name: string;
  windows: string[];
}

function main(): void {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '3000' } } });
  const calls = Number(values.calls);
  const root = path.resolve(__dirname, '..', '..');

  const loadStart = process.hrtime.bigint();
  preloadTokenizer('o200k_base');
  const chosenLoadMs = msSince(loadStart);
  const tiktokenStart = process.hrtime.bigint();
  const { get_encoding }: typeof import('tiktoken') = require('tiktoken');
  const tiktoken = get_encoding('o200k_base');
  const tiktokenLoadMs = msSince(tiktokenStart);
  const gptTokenizerStart = process.hrtime.bigint();
  const gptTokenizer: typeof import('gpt-tokenizer/encoding/o200k_base') = require('gpt-tokenizer/encoding/o200k_base');
  const gptTokenizerLoadMs = msSince(gptTokenizerStart);

  // Prose, not the generated tables of benchmarks*.md and configuration.md.
  const english = ['README.md', 'docs/decisions.md', 'docs/kong-compat.md'].map((f) =>
    readFileSync(path.join(root, f), 'utf8'),
  );
  const code = filesUnder(path.join(root, 'lib'), '.ts').map((f) => readFileSync(f, 'utf8'));
  const corpora: Corpus[] = [
    { name: 'English', windows: windowsOf(english.join('\n\n')) },
    { name: 'code', windows: windowsOf(code.join('\n\n')) },
    { name: 'CJK', windows: windowsOf(CJK) },
  ];

  const reference = (text: string) => tiktoken.encode_ordinary(text).length;
  const ordinaryText = { disallowedSpecial: new Set<string>() };
  const javascript = (text: string) => gptTokenizer.countTokens(text, ordinaryText);
  const chosen = (text: string) => countTokens(text, 'o200k_base');
  const variants: Variant[] = [
    { name: 'tiktoken', count: reference },
    { name: 'gpt-tokenizer, warm', count: javascript, fill: true },
    { name: 'gpt-tokenizer, cold', count: javascript, beforeEach: () => gptTokenizer.clearMergeCache() },
    { name: 'countTokens, warm', count: chosen, fill: true },
    { name: 'countTokens, cold', count: chosen, beforeEach: clearTokenCache },
  ];
  const rows: string[] = [];
  const verdicts: string[] = [];
  let pass = true;
  let gptTokenizerDiffers = 0;
  for (const corpus of corpora) {
    let tokens = 0;
    let cl100kTokens = 0;
    for (const w of corpus.windows) {
      const expected = reference(w);
      if (chosen(w) !== expected)
        throw new Error(`${corpus.name}: countTokens differs from tiktoken on a window`);
      if (javascript(w) !== expected) gptTokenizerDiffers++;
      tokens += expected;
      cl100kTokens += countTokens(w, 'cl100k_base');
    }
    for (let i = 0; i < 300; i++) for (const variant of variants) variant.count(windowAt(corpus, i));
    const times = variants.map(() => [] as number[]);
    for (let from = 0; from < calls; from += BLOCK) {
      variants.forEach((variant, v) => {
        // Warm means every window seen before: refill what a cold block emptied.
        if (variant.fill) for (let i = 0; i < corpus.windows.length; i++) variant.count(windowAt(corpus, i));
        collectGarbage();
        for (let i = from; i < from + BLOCK; i++) {
          variant.beforeEach?.();
          times[v]!.push(timed(variant.count, windowAt(corpus, i)));
        }
      });
    }
    const stats = times.map(percentiles);
    const [tiktokenP50] = stats[0]!;
    const [coldP50, coldP99] = stats[stats.length - 1]!;
    pass &&= coldP50 <= TARGET_MS;
    verdicts.push(
      `${corpus.name} ${coldP50 <= TARGET_MS ? 'PASS' : 'FAIL'} (p50 ${ms(coldP50)} ms, p99 ${ms(coldP99)} ms)`,
    );
    rows.push(
      `| ${corpus.name} | ${Math.round(tokens / corpus.windows.length)} | ` +
        stats.map(([p50, p99]) => `${ms(p50)} / ${ms(p99)}`).join(' | ') +
        ` | ${(tiktokenP50 / coldP50).toFixed(1)}x | ${(cl100kTokens / tokens).toFixed(2)} |`,
    );
  }

  const cpu = os.cpus()[0];
  console.log(
    `machine: ${cpu?.model ?? 'unknown CPU'}, ${os.cpus().length} vCPU, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
      `Node ${process.versions.node} (Unicode ${process.versions.unicode}), ${os.platform()} ${os.release()}`,
  );
  console.log(
    `first use of o200k_base: countTokens ${Math.round(chosenLoadMs)} ms, tiktoken ${Math.round(tiktokenLoadMs)} ms, ` +
      `gpt-tokenizer ${Math.round(gptTokenizerLoadMs)} ms`,
  );
  console.log(
    `${calls} calls per variant and prompt, ${WINDOWS} different ${PROMPT_BYTES}-byte windows each`,
  );
  console.log(`gpt-tokenizer differs from tiktoken on ${gptTokenizerDiffers} of ${3 * WINDOWS} windows\n`);
  console.log(
    `| 4 KB prompt | o200k tokens | ${variants.map((v) => `${v.name} p50 / p99 ms`).join(' | ')} ` +
      '| tiktoken / countTokens cold (p50) | cl100k / o200k tokens |',
  );
  console.log(`|${'---|'.repeat(variants.length + 4)}`);
  for (const row of rows) console.log(row);
  console.log(
    `\nverdict, countTokens on text never seen before, p50 ≤ ${TARGET_MS} ms: ${pass ? 'PASS' : 'FAIL'}`,
  );
  for (const verdict of verdicts) console.log(`  ${verdict}`);
  process.exitCode = pass ? 0 : 1;
}

interface Variant {
  name: string;
  count: (text: string) => number;
  /** Count every window once before each block, unmeasured. */
  fill?: boolean;
  /** Before each measured call, unmeasured. */
  beforeEach?: () => void;
}

// Each block starts on a clean heap, so no tokenizer pays for the garbage of another.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

function windowAt(corpus: Corpus, call: number): string {
  return corpus.windows[call % corpus.windows.length]!;
}

/** WINDOWS windows of PROMPT_BYTES UTF-8 bytes each, spread over the corpus, as flat strings. */
function windowsOf(corpus: string): string[] {
  const chars = Array.from(corpus);
  const windows: string[] = [];
  for (let i = 0; i < WINDOWS; i++) {
    let start = Math.floor((i * chars.length) / WINDOWS);
    let text = '';
    let bytes = 0;
    while (bytes < PROMPT_BYTES) {
      const char = chars[start++ % chars.length]!;
      bytes += Buffer.byteLength(char, 'utf8');
      text += char;
    }
    windows.push(JSON.parse(JSON.stringify(text)));
  }
  return windows;
}

function filesUnder(dir: string, extension: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const file = path.join(dir, name);
      if (statSync(file).isDirectory()) return filesUnder(file, extension);
      return file.endsWith(extension) ? [file] : [];
    });
}

function timed(count: (text: string) => number, text: string): number {
  const start = process.hrtime.bigint();
  count(text);
  return msSince(start);
}

function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function percentiles(samples: number[]): [number, number] {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  return [at(0.5), at(0.99)];
}

function ms(value: number): string {
  return value.toFixed(3);
}

main();
