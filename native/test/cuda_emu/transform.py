"""Rewrites a CUDA source for the emulated build (scripts/cuda-emulate.sh): dynamic shared memory
becomes the emulator's per-block buffer, static __shared__ arrays become statics (blocks run one
at a time), kernel<<<grid, block, smem, stream>>>(args) becomes emu::Launch(...).run(kernel, args),
and cuda_memcpy the harness's copy. usage: transform.py in.cu out.cpp"""
import re, sys, os
src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
s = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = reinterpret_cast<\1*>(::emu::dyn_smem().data());', s)
s = re.sub(r'\b__shared__\b', 'static', s)
s = re.sub(r'([A-Za-z_][\w:]*(?:<[^;<>()]*>)?)\s*<<<((?:.|\n)*?)>>>\s*\(', lambda m: '::emu::Launch(%s).run(%s, ' % (m.group(2), m.group(1)), s)
s = s.replace('cuda_memcpy(', 'emu_memcpy(')
open(dst, 'w').write(s)
