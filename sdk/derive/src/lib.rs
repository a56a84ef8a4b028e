//! Procedural macros of `weir-sdk`. Use them through `weir_sdk`, not directly.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr, parse_macro_input};

/// The WIT contract, embedded so that a UDF crate generates its world's export glue
/// from exactly the contract this SDK was built against.
const WIT: &str = include_str!("../../../wit/udf.wit");

/// The column name of each field: its own, or `#[row(rename = "...")]`,
/// or the struct's `#[row(rename_all = "camelCase")]` rule applied to it.
fn column_names(input: &DeriveInput, fields: &[&syn::Field]) -> syn::Result<Vec<String>> {
    let mut rule: Option<LitStr> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("row")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                let value: LitStr = meta.value()?.parse()?;
                if !matches!(value.value().as_str(), "camelCase" | "PascalCase") {
                    return Err(meta.error("rename_all takes \"camelCase\" or \"PascalCase\""));
                }
                rule = Some(value);
                Ok(())
            } else {
                Err(meta.error("unknown row attribute: use `rename_all = \"camelCase\"` on the struct, `rename = \"...\"` on a field"))
            }
        })?;
    }
    let mut names = Vec::with_capacity(fields.len());
    for field in fields {
        let ident = field
            .ident
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let ident = ident.strip_prefix("r#").unwrap_or(&ident).to_string();
        let mut name = match rule.as_ref().map(LitStr::value).as_deref() {
            Some(rule) => {
                let mut out = String::new();
                let mut upper = rule == "PascalCase";
                for c in ident.chars() {
                    if c == '_' {
                        upper = true;
                    } else if upper {
                        out.extend(c.to_uppercase());
                        upper = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            }
            None => ident,
        };
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("row")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    let value: LitStr = meta.value()?.parse()?;
                    if value.value().is_empty() {
                        return Err(meta.error("a column name cannot be empty"));
                    }
                    name = value.value();
                    Ok(())
                } else {
                    Err(meta.error("unknown row attribute: use `rename = \"...\"` on a field"))
                }
            })?;
        }
        if names.contains(&name) {
            return Err(syn::Error::new_spanned(
                field,
                format!("two fields are column `{name}`"),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// `#[derive(Row)]`: a struct whose named fields are columns. A field's
/// column is named after it, or as `#[row(rename = "dateTime")]` says; a
/// struct's `#[row(rename_all = "camelCase")]` (or `"PascalCase"`) names
/// every field's column by that rule.
#[proc_macro_derive(Row, attributes(row))]
pub fn derive_row(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
            _ => {
                return syn::Error::new_spanned(name, "Row needs a struct with named fields")
                    .to_compile_error()
                    .into();
            }
        },
        _ => {
            return syn::Error::new_spanned(name, "Row can only be derived for structs")
                .to_compile_error()
                .into();
        }
    };
    let idents: Vec<_> = fields.iter().filter_map(|f| f.ident.clone()).collect();
    let names = match column_names(&input, &fields) {
        Ok(names) => names,
        Err(e) => return e.to_compile_error().into(),
    };
    let types: Vec<_> = fields.iter().map(|f| f.ty.clone()).collect();
    let index: Vec<syn::Index> = (0..fields.len()).map(syn::Index::from).collect();
    let count = fields.len();
    // A row may borrow from its batch through one lifetime parameter.
    let generics = &input.generics;
    let lifetimes: Vec<_> = generics.lifetimes().map(|l| l.lifetime.clone()).collect();
    if generics.type_params().next().is_some()
        || generics.const_params().next().is_some()
        || lifetimes.len() > 1
    {
        return syn::Error::new_spanned(
            generics,
            "a Row may have at most one lifetime parameter (the batch it borrows from) and no type parameters",
        )
        .to_compile_error()
        .into();
    }
    let (read_generics, read_lifetime) = match lifetimes.first() {
        Some(l) => (quote! { <#l> }, quote! { #l }),
        None => (quote! { <'__batch> }, quote! { '__batch }),
    };
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let reader_ty = quote! { ( #( <#types as ::weir_sdk::ReadValue<#read_lifetime>>::Reader, )* ) };
    let builder_ty = quote! { ( #( <#types as ::weir_sdk::Value>::Builder, )* ) };
    let output_ty = quote! { ( #( ::weir_sdk::OutputBuilder<'__s, #types>, )* ) };
    quote! {
        impl #impl_generics ::weir_sdk::Row for #name #ty_generics #where_clause {
            type Builder = #builder_ty;

            const NAMES: &'static [&'static str] = &[ #( #names ),* ];

            fn fields() -> ::std::vec::Vec<::weir_sdk::Field> {
                ::std::vec![ #( ::weir_sdk::field_of::<#types>(#names) ),* ]
            }

            fn builder(capacity: usize) -> Self::Builder {
                ( #( <#types as ::weir_sdk::Value>::builder(capacity), )* )
            }

            #[inline]
            fn push(self, builder: &mut Self::Builder) {
                #( <#types as ::weir_sdk::Value>::push(self.#idents, &mut builder.#index); )*
            }

            fn finish(builder: Self::Builder) -> ::std::vec::Vec<::weir_sdk::Column> {
                ::std::vec![ #( <#types as ::weir_sdk::Value>::finish(builder.#index) ),* ]
            }

            type Output<'__s> = #output_ty;

            #[inline]
            fn output<'__s>(columns: &'__s [::weir_sdk::Column], names: &[&str], rows: usize, capacity: usize) -> Self::Output<'__s> {
                ( #( ::weir_sdk::OutputBuilder::new(#names, columns, names, rows, capacity), )* )
            }

            #[inline]
            unsafe fn push_output(self, output: &mut Self::Output<'_>, parent: u32, earlier: &[u32]) {
                // SAFETY: forwarded from the caller.
                unsafe { #( output.#index.push(self.#idents, parent, earlier); )* }
            }

            #[inline]
            fn finish_output(output: Self::Output<'_>) -> ::std::vec::Vec<::weir_sdk::OutputColumn> {
                ::std::vec![ #( output.#index.finish() ),* ]
            }
        }

        impl #read_generics ::weir_sdk::ReadRow<#read_lifetime> for #name #ty_generics #where_clause {
            type Reader = #reader_ty;

            fn reader(columns: &#read_lifetime [::weir_sdk::Column], rows: usize) -> ::std::result::Result<Self::Reader, ::weir_sdk::UdfError> {
                if columns.len() != #count {
                    return ::std::result::Result::Err(::weir_sdk::UdfError::new(::std::format!(
                        "row type {} reads {} columns but the batch has {}",
                        ::std::stringify!(#name), #count, columns.len()
                    )));
                }
                ::std::result::Result::Ok(( #( <#types as ::weir_sdk::ReadValue<#read_lifetime>>::reader(#names, &columns[#index], rows)?, )* ))
            }

            #[inline]
            unsafe fn read(reader: &Self::Reader, row: usize) -> Self {
                // SAFETY: every column was checked for the batch's rows and the
                // caller promises `row` is one of them.
                unsafe { #name { #( #idents: <#types as ::weir_sdk::ReadValue<#read_lifetime>>::read(&reader.#index, row), )* } }
            }
        }
    }
    .into()
}

/// Emits the export glue of one world (`processor`, `reducer` or `scalar`) in the
/// calling crate, bound to the SDK's shared types. Used by the SDK's export macros.
#[proc_macro]
pub fn __world_bindings(input: TokenStream) -> TokenStream {
    let world = parse_macro_input!(input as LitStr);
    let world = world.value();
    let wit = LitStr::new(WIT, proc_macro2::Span::call_site());
    let qualified = format!("weir:udf/{world}");
    let reducer_only = if world.ends_with("reducer") {
        quote! {
            "weir:udf/keys@0.2.0": ::weir_sdk::wit::weir::udf::keys,
            "weir:udf/state@0.2.0": ::weir_sdk::wit::weir::udf::state,
        }
    } else {
        quote! {}
    };
    let timed_only = if world.starts_with("timed-") {
        quote! {
            "weir:udf/timers@0.2.0": ::weir_sdk::wit::weir::udf::timers,
        }
    } else {
        quote! {}
    };
    quote! {
        ::weir_sdk::__private::wit_bindgen::generate!({
            inline: #wit,
            world: #qualified,
            runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
            with: {
                "weir:udf/types@0.2.0": ::weir_sdk::wit::weir::udf::types,
                "weir:udf/log@0.2.0": ::weir_sdk::wit::weir::udf::log,
                #reducer_only
                #timed_only
            },
        });
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Result<Vec<String>, String> {
        let input: DeriveInput = syn::parse_str(text).map_err(|e| e.to_string())?;
        let Data::Struct(s) = &input.data else {
            return Err("not a struct".into());
        };
        let fields: Vec<&syn::Field> = s.fields.iter().collect();
        column_names(&input, &fields).map_err(|e| e.to_string())
    }

    #[test]
    fn renames_and_their_mistakes() {
        assert_eq!(
            names("#[row(rename_all = \"PascalCase\")] struct A { bid_price: i64, r#type: i64 }"),
            Ok(vec!["BidPrice".to_string(), "Type".to_string()])
        );
        assert!(
            names("#[row(rename_all = \"snake\")] struct A { a: i64 }")
                .is_err_and(|e| e.contains("rename_all takes"))
        );
        assert!(
            names("struct A { #[row(name = \"x\")] a: i64 }")
                .is_err_and(|e| e.contains("unknown row attribute"))
        );
        assert!(
            names("struct A { #[row(rename = \"b\")] a: i64, b: i64 }")
                .is_err_and(|e| e.contains("two fields are column `b`"))
        );
        assert!(
            names("struct A { #[row(rename = \"\")] a: i64 }")
                .is_err_and(|e| e.contains("cannot be empty"))
        );
    }
}
