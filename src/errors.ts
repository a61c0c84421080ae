/**
 * The errors this package throws for bad input, so that callers (and tests)
 * can tell them apart by class and fields instead of matching message text.
 * Every message still names the layer or op, the field, the value and what is
 * allowed.
 */

/** A config field (of a layer, op or model file) has a value that is not allowed. */
export class NormalizationConfigError extends Error {
  override name = 'NormalizationConfigError';

  /**
   * @param owner The layer (`BatchNormLayer 'bn'`) or op (`batchNormTraining`) the field belongs to.
   * @param field The field's name as the user wrote it (`momentum`, `virtual_batch_size`).
   * @param value The value received.
   * @param message The whole message.
   */
  constructor(readonly owner: string, readonly field: string, readonly value: unknown, message: string) {
    super(message);
  }
}

/** A tensor or weight has a shape, rank or dtype that the layer or op cannot take. */
export class NormalizationShapeError extends Error {
  override name = 'NormalizationShapeError';

  /**
   * @param owner The layer or op.
   * @param argument The input, argument or weight whose shape is wrong (`x`, `gamma`, `moving_mean`).
   * @param message The whole message, with the expected and received shapes.
   */
  constructor(readonly owner: string, readonly argument: string, message: string) {
    super(message);
  }
}
