// Peak rate of the two multiply-add instructions bf16 and fp32 GEMMs are made of, on one core: VDPBF16PS (AVX512-BF16:
// 32 bf16 products summed pairwise into 16 fp32 lanes, 64 FLOP) and VFMADD231PS (16 fp32 lanes, 32 FLOP), ten
// independent accumulator chains each, so throughput (not latency) is measured. docs/performance.md quotes it.
//   clang -O2 benchmarks/bf16_peak.c -o /tmp/bf16_peak && taskset -c 1 /tmp/bf16_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
__attribute__((target("avx512f,avx512bf16")))
double bf(long n){ __m512 a0=_mm512_setzero_ps(),a1=a0,a2=a0,a3=a0,a4=a0,a5=a0,a6=a0,a7=a0,a8=a0,a9=a0;
 __m512bh x=(__m512bh)_mm512_set1_epi16(0x3f80), y=x; double t=now();
 for(long i=0;i<n;i++){a0=_mm512_dpbf16_ps(a0,x,y);a1=_mm512_dpbf16_ps(a1,x,y);a2=_mm512_dpbf16_ps(a2,x,y);a3=_mm512_dpbf16_ps(a3,x,y);a4=_mm512_dpbf16_ps(a4,x,y);
 a5=_mm512_dpbf16_ps(a5,x,y);a6=_mm512_dpbf16_ps(a6,x,y);a7=_mm512_dpbf16_ps(a7,x,y);a8=_mm512_dpbf16_ps(a8,x,y);a9=_mm512_dpbf16_ps(a9,x,y);}
 t=now()-t; __m512 s=_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0,a1),_mm512_add_ps(a2,a3)),_mm512_add_ps(_mm512_add_ps(a4,a5),_mm512_add_ps(_mm512_add_ps(a6,a7),_mm512_add_ps(a8,a9))));
 float o[16]; _mm512_storeu_ps(o,s); if(o[0]==1) printf("x");
 return 10.0*n*64/t/1e9; }
__attribute__((target("avx512f")))
double fm(long n){ __m512 a0=_mm512_setzero_ps(),a1=a0,a2=a0,a3=a0,a4=a0,a5=a0,a6=a0,a7=a0,a8=a0,a9=a0; __m512 x=_mm512_set1_ps(1.0f),y=x; double t=now();
 for(long i=0;i<n;i++){a0=_mm512_fmadd_ps(x,y,a0);a1=_mm512_fmadd_ps(x,y,a1);a2=_mm512_fmadd_ps(x,y,a2);a3=_mm512_fmadd_ps(x,y,a3);a4=_mm512_fmadd_ps(x,y,a4);
 a5=_mm512_fmadd_ps(x,y,a5);a6=_mm512_fmadd_ps(x,y,a6);a7=_mm512_fmadd_ps(x,y,a7);a8=_mm512_fmadd_ps(x,y,a8);a9=_mm512_fmadd_ps(x,y,a9);}
 t=now()-t; __m512 s=_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0,a1),_mm512_add_ps(a2,a3)),_mm512_add_ps(_mm512_add_ps(a4,a5),_mm512_add_ps(_mm512_add_ps(a6,a7),_mm512_add_ps(a8,a9))));
 float o[16]; _mm512_storeu_ps(o,s); if(o[0]==1) printf("x");
 return 10.0*n*32/t/1e9; }
int main(){
 __builtin_cpu_init();
 if(!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bf16")){ fprintf(stderr,"this CPU has no AVX512-BF16\n"); return 2; }
 for(int r=0;r<3;r++) printf("vdpbf16ps %.1f GFLOP/s, vfmadd231ps %.1f GFLOP/s\n", bf(100000000), fm(100000000)); }
