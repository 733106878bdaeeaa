//! `segments_erased(customer_id)`: the engine's filter of erased customers
//! (the warehouse's suppression list as a scalar function), and how the
//! Ballista codec carries it to executors without the salt.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::datatypes::DataType;

use crate::warehouse::erasure::Suppression;

/// `segments_erased(customer_id)`: true for an erased id (the engine's
/// filter of erased customers).
#[derive(Debug)]
struct Erased {
    suppression: Arc<Suppression>,
    signature: datafusion::logical_expr::Signature,
}

// Two filters are the same function when they hold the same list.
impl PartialEq for Erased {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.suppression, &other.suppression)
    }
}

impl Eq for Erased {}

impl std::hash::Hash for Erased {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.suppression).hash(state);
    }
}

/// The name plans carry for the filter of erased customers.
pub const ERASED_UDF: &str = "segments_erased";

impl datafusion::logical_expr::ScalarUDFImpl for Erased {
    fn name(&self) -> &str {
        ERASED_UDF
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::logical_expr::ColumnarValue;
        let array = args.args[0].to_array(args.number_rows)?;
        let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let erased: BooleanArray = (0..text.len())
            .map(|row| Some(text.is_valid(row) && self.suppression.contains(text.value(row))))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(erased)))
    }
}

/// A customer-id filter for the engine: true for erased ids.
pub fn erased_udf(suppression: Arc<Suppression>) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::ScalarUDF::from(Erased {
        suppression,
        signature: datafusion::logical_expr::Signature::exact(
            vec![DataType::Utf8],
            datafusion::logical_expr::Volatility::Immutable,
        ),
    })
}

/// How the Ballista codec sends [`erased_udf`] to executors: the salt check
/// (an HMAC of a fixed text, which does not reveal the salt) and the hashes,
/// one per line; never the salt. `None` for any other function.
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn encode_erased_udf(udf: &datafusion::logical_expr::ScalarUDF) -> Option<String> {
    let erased = udf.inner().downcast_ref::<Erased>()?;
    let suppression = &erased.suppression;
    let mut text = suppression.salt_check();
    for hash in suppression.sorted_hashes() {
        text.push('\n');
        text.push_str(hash);
    }
    Some(text)
}

/// The filter of [`encode_erased_udf`] on an executor: with the salt of its
/// own environment, which must be the one the hashes were made with.
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn decode_erased_udf(text: &str) -> Result<datafusion::logical_expr::ScalarUDF, String> {
    let mut lines = text.lines();
    let check = lines.next().unwrap_or_default();
    let hashes = lines.map(str::to_string).collect();
    Ok(erased_udf(Arc::new(Suppression::with_env_salt(
        check, hashes,
    )?)))
}
