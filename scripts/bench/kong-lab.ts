/**
 * A real Kong 3.9.3 from the Kong lab (/work/shared/kong-lab scripts, built into LAB):
 * waits until no other Kong runs from that lab (one at a time: others use it too), starts
 * it with our plugin server lines (lib/kong/kong-conf.ts) and a declarative config, and
 * stops it again.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import {
  installationRoot,
  kongConfLines,
  pluginServerDefs,
  SUITE_PLUGIN_NAMES,
} from '../../lib/kong/kong-conf';
import { findPids, processTree } from './procstat';

export interface KongLabOptions {
  lab: string;
  /** Folder holding start.sh / stop.sh. */
  scripts: string;
  workDir: string;
  socketDir: string;
  proxyPort: number;
  adminPort: number;
  declarative: object;
  /** The suite server's environment (AIGW_*), passed through the start_cmd. */
  serverEnv: Record<string, string>;
  log: (line: string) => void;
}

/** Why the lab is busy now, or undefined when it is free. */
export function labBusy(lab: string): string | undefined {
  const prefix = path.join(lab, 'run', 'kong');
  const pidFile = path.join(prefix, 'pids', 'nginx.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    try {
      if (pid > 0) {
        process.kill(pid, 0);
        return `nginx master ${pid} (${pidFile}) is running`;
      }
    } catch {
      // stale pid file
    }
  }
  const masters = findPids('nginx', prefix);
  if (masters.length) return `nginx processes of ${prefix} are running: ${masters.join(', ')}`;
  const scripts = [
    ...findPids('kong-lab/start.sh'),
    ...findPids('kong-lab/stop.sh'),
    ...findPids('kong-lab/test.sh'),
  ];
  if (scripts.length) return `a Kong lab script is running: pid ${scripts.join(', ')}`;
  return undefined;
}

export async function waitForLab(lab: string, maxWaitS: number, log: (s: string) => void): Promise<boolean> {
  const until = Date.now() + maxWaitS * 1000;
  let said = '';
  for (;;) {
    const busy = labBusy(lab);
    if (!busy) return true;
    if (busy !== said) {
      log(`Kong lab busy (${busy}); waiting up to ${maxWaitS} s`);
      said = busy;
    }
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 5000));
  }
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) log(`  | ${line}`);
    };
    child.stdout.on('data', out);
    child.stderr.on('data', out);
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

export class KongLab {
  private started = false;

  private constructor(private readonly o: KongLabOptions) {}

  get url(): string {
    return `http://127.0.0.1:${this.o.proxyPort}`;
  }

  static async start(o: KongLabOptions): Promise<KongLab> {
    const lab = new KongLab(o);
    const defs = pluginServerDefs({
      socketDir: o.socketDir,
      node: process.execPath,
      root: installationRoot(),
      env: o.serverEnv,
    });
    const psConf = path.join(o.workDir, 'pluginserver.conf');
    writeFileSync(psConf, `${kongConfLines(defs).join('\n')}\n`);
    const kongYml = path.join(o.workDir, 'kong.yml');
    writeFileSync(kongYml, toYaml(o.declarative));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LAB: o.lab,
      PLUGINSERVER_CONF: psConf,
      KONG_PLUGINS: ['bundled', ...SUITE_PLUGIN_NAMES].join(','),
      KONG_DECLARATIVE: kongYml,
      NO_UPSTREAM: '1',
      PROXY_PORT: String(o.proxyPort),
      ADMIN_PORT: String(o.adminPort),
      // Kong's default (the lab's kong.conf says info); KONG_* overrides kong.conf.
      KONG_LOG_LEVEL: 'notice',
    };
    lab.started = true; // from here on, stop.sh must run whatever happens
    const code = await run('bash', [path.join(o.scripts, 'start.sh')], env, o.log);
    if (code !== 0) {
      await lab.stop();
      throw new Error(`Kong lab start.sh exited with ${code}`);
    }
    return lab;
  }

  /** nginx master and its workers (and anything else they spawned, except the suite server). */
  nginxPids(suitePid: number | undefined): number[] {
    const pidFile = path.join(this.o.lab, 'run', 'kong', 'pids', 'nginx.pid');
    const master = Number(readFileSync(pidFile, 'utf8').trim());
    return processTree(master).filter((p) => p !== suitePid);
  }

  /** The suite server Kong spawned (its start_cmd names our socket dir). */
  suitePid(): number | undefined {
    return findPids('main.js', '--socket-dir', this.o.socketDir)[0];
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await run(
      'bash',
      [path.join(this.o.scripts, 'stop.sh')],
      { ...process.env, LAB: this.o.lab },
      this.o.log,
    );
  }
}
