// patentgpt info: what the native binary has and what it found on this machine.
import { Command } from 'commander';
import { runtimeInfo } from '../tensor/index.js';

export function infoCommand(version: string): Command {
  return new Command('info')
    .description('print version, SIMD level, threads, CUDA support and GPUs found')
    .option('--json', 'print one JSON object')
    .action((opts: { json?: boolean }) => {
      const info = runtimeInfo();
      const report = {
        version,
        node: process.versions.node,
        platform: `${process.platform}-${process.arch}`,
        simd: info.simd,
        threads: info.threads,
        cudaCompiled: info.cudaCompiled,
        gpus: info.gpus,
        cudaStatus: info.cudaStatus,
      };
      if (opts.json) {
        console.log(JSON.stringify(report));
        return;
      }
      const gpus = info.gpus.length
        ? info.gpus.map((g) => `#${g.index} ${g.name} (sm ${g.computeCapability}, ${(g.totalMemory / 2 ** 30).toFixed(1)} GiB)`).join('; ')
        : `none (${info.cudaStatus})`;
      console.log(
        [
          `patentgpt ${version} on node ${process.versions.node} (${report.platform})`,
          `SIMD:          ${info.simd}`,
          `threads:       ${info.threads}`,
          `CUDA compiled: ${info.cudaCompiled ? 'yes' : 'no'}`,
          `GPUs:          ${gpus}`,
        ].join('\n'),
      );
    });
}
