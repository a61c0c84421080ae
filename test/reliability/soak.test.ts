/**
 * The short soak: the same model and checks as `npm run soak` (soak.ts), 200
 * steps instead of 10,000.
 */
import {runSoak} from './soak';

it('200 steps of BN, BRN and GN with batch sizes 1..64: no NaN, numTensors flat, statistics converge', async () => {
  // momentum 0.97 instead of 0.999 so the moving averages converge within 200 steps:
  // the start value (0 / 1) weighs 0.97^200 ≈ 2e-3, i.e. up to 0.02 on the mean 10; and
  // the average spans ~33 steps instead of ~1,000, so batch-to-batch noise is ~5.5x
  // larger (sqrt(0.03/1.97) vs sqrt(0.001/1.999)). 5e-2 leaves room for both.
  const result = await runSoak({steps: 200, momentum: 0.97, tolerance: 5e-2});
  expect(result.failures).toEqual([]);
  expect(result.tensorsAtEnd).toBe(result.tensorsAfterWarmup);
  expect(result.nonFiniteLosses).toBe(0);
});
